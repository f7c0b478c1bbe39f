"""A model folder's own tokenizer and chat template, on the real files of Qwen2.5, Qwen3,
Llama 3.2 and Mistral 7B v0.1 (tests/real_tokenizers.py), against transformers."""

from __future__ import annotations

import json
import shutil
import unicodedata
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest
import sentencepiece as spm
import torch
from tiny_models import seeded_model, tiny_config
from transformers import AutoTokenizer

from helox.common.io import JsonlWriter, iter_jsonl, read_json
from helox.model.folder import load_final, save_final
from helox.model.generate import Generator, SamplingConfig
from helox.model.token_rows import add_token_rows
from helox.tokens.chat_setup import chat_format, prepare_chat
from helox.tokens.shards import (
    SPLITS,
    ShardsConfig,
    build_dataset_shards,
    manifest_of_tokenizer,
    read_shard,
)
from helox.tokens.template_chat import TemplateChat
from helox.tokens.tokenizer import adopt_tokenizer
from helox.tokens.vocab import CHAT_MARKERS, load_tokenizer
from helox.train.tracking import TrackingConfig
from helox.tune.config import SFTConfig
from helox.tune.sft import run_sft
from helox.tune.sft_data import encode_examples

TEXTS = [
    "def f(x):\n    return x  # ünïcödé 日本語 🙂\n\t\ttabs",
    " leading space",
    "  two leading spaces",
    "\n\nnewlines first",
    "trailing spaces   ",
    "x  # y",
    "e\u0301 combining marks: a\u0308 n\u0303 \u0915\u094d\u0937",
    "中文和日本語、한국어のテキスト。",
    "emoji 👩\u200d💻 🇫🇷 🙂🙂 ☃",
    "tabs\tand\t\tmore\t",
    "runs of     spaces\u00a0and nbsp",
    "12345678 3.14159 1e-10",
    "class Stack:\n    def push(self, item: int) -> None:\n        self.items.append(item)\n",
    "",
    " ",
    "\u2581 a sentencepiece space typed",
]
# Special-token strings typed as text: transformers (and Helox) find them in the text.
TYPED_SPECIALS = (
    "typed: <s> </s> <unk> <|im_end|> <|endoftext|> <|begin_of_text|> <|eot_id|> <think>"
)
CONVERSATION = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "4"},
    {"role": "user", "content": "And 3+3?  "},
    {"role": "assistant", "content": "6\n"},
]
TEMPLATE_KWARGS = {"date_string": "26 Jul 2024"}  # Llama 3.2's template dates its system turn
# What the model puts before a text: Llama 3 and Mistral their BOS, Qwen nothing.
BOS_ADDED = {"qwen2.5": None, "qwen3": None, "llama3.2": 128000, "mistral": 1}
MISTRAL_CONFIG = {
    "add_bos_token": True,
    "add_eos_token": False,
    "bos_token": "<s>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
    "legacy": True,
}


@pytest.fixture(scope="module")
def folders(real_tokenizers: Path, tmp_path_factory) -> dict[str, Path]:
    """Model folders holding the real files: Qwen and Llama as their repositories have them;
    Mistral's `tokenizer.model` with its config (as transformers' fast tokenizer, and as
    transformers 5's LlamaTokenizer class, which departs from sentencepiece)."""
    root = tmp_path_factory.mktemp("tokenizers")
    found = {}
    for name in ("qwen2.5", "qwen3", "llama3.2"):
        found[name] = root / name
        shutil.copytree(real_tokenizers / name, found[name])
    for name, tokenizer_class in (
        ("mistral", "PreTrainedTokenizerFast"),
        ("mistral-llama", "LlamaTokenizer"),
    ):
        found[name] = root / name
        found[name].mkdir()
        shutil.copyfile(
            real_tokenizers / "mistral-7b-v0.1" / "tokenizer.model", found[name] / "tokenizer.model"
        )
        config = {**MISTRAL_CONFIG, "tokenizer_class": tokenizer_class}
        (found[name] / "tokenizer_config.json").write_text(json.dumps(config))
    return found


@pytest.fixture(scope="module")
def loaded(folders):
    """(Helox's tokenizer, transformers') of a folder, each loaded once."""
    cache = {}

    def load(name: str):
        if name not in cache:
            cache[name] = (
                load_tokenizer(folders[name]),
                AutoTokenizer.from_pretrained(folders[name]),
            )
        return cache[name]

    return load


# ---------------------------------------------------------------------------- encoding


@pytest.mark.parametrize("name", ["qwen2.5", "qwen3", "llama3.2", "mistral"])
def test_encoding_and_bos_convention_equal_transformers(loaded, name) -> None:
    ours, theirs = loaded(name)
    for text in [*TEXTS, TYPED_SPECIALS]:
        ids = ours.encode(text)
        assert ids == theirs.encode(text, add_special_tokens=False), text
        assert ours.decode(ids) == theirs.decode(ids, skip_special_tokens=True)
    assert (ours.bos if ours.adds_bos else None) == BOS_ADDED[name]
    document = ours.document_ids(ours.encode("Hello world"))
    assert document[:-1] == theirs.encode("Hello world") and document[-1] == ours.eos
    assert ours.eos == theirs.eos_token_id and ours.vocab_size == len(theirs)


def test_mistral_follows_sentencepiece_where_llama_tokenizer_departs(
    loaded, real_tokenizers
) -> None:
    ours, _ = loaded("mistral")
    _, llama_class = loaded("mistral-llama")
    reference = spm.SentencePieceProcessor(
        model_file=str(real_tokenizers / "mistral-7b-v0.1" / "tokenizer.model")
    )
    for text in TEXTS:
        assert ours.encode(text) == reference.encode(text), text
    for text in (" leading space", "x  # y"):
        assert llama_class.encode(text, add_special_tokens=False) != ours.encode(text)
    assert llama_class.encode("plain words", add_special_tokens=False) == ours.encode("plain words")


@pytest.mark.parametrize("name", ["qwen3", "llama3.2", "mistral"])
def test_byte_lengths_sum_to_the_utf8_length_of_the_decoded_text(loaded, name) -> None:
    ours, _ = loaded(name)
    lengths = ours.token_bytes()
    assert len(lengths) == ours.vocab_size and lengths[ours.eos] == 0
    for text in TEXTS[:13]:
        ids = ours.encode(text)
        decoded = ours.decode(ids)
        # SentencePiece's dummy prefix: the space it puts before a text is a piece's byte.
        dummy_space = 1 if name == "mistral" else 0
        assert sum(lengths[i] for i in ids) == len(decoded.encode("utf-8")) + dummy_space
        assert decoded == (unicodedata.normalize("NFC", text) if name == "qwen3" else text)
    if name == "mistral":
        crab = ours.encode("🦀")  # no piece: four byte pieces after the dummy prefix
        assert set(crab[1:]) <= ours.byte_fallback_ids and len(crab) == 5
    else:
        assert ours.piece(ours.encode(" the")[0]) == " the" and not ours.byte_fallback_ids


# ---------------------------------------------------------------------------- chat templates


@pytest.mark.parametrize("name", ["qwen2.5", "qwen3", "llama3.2"])
def test_chat_render_equals_apply_chat_template(loaded, folders, name) -> None:
    ours, theirs = loaded(name)
    chat = TemplateChat(ours, ours.chat_template, str(folders[name]), TEMPLATE_KWARGS)
    for messages in (CONVERSATION, CONVERSATION[1:3], CONVERSATION[1:2]):
        for prompt in (False, True):
            expected = theirs.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=prompt, **TEMPLATE_KWARGS
            )
            assert chat.render(messages, prompt) == expected
    expected_ids = theirs.apply_chat_template(
        CONVERSATION[:4], add_generation_prompt=True, return_dict=False, **TEMPLATE_KWARGS
    )
    assert chat.prompt(CONVERSATION[:4]) == expected_ids
    assert chat.end_of_turn == theirs.convert_tokens_to_ids(
        "<|eot_id|>" if name == "llama3.2" else "<|im_end|>"
    )


@pytest.mark.parametrize(
    ("name", "header"),
    [
        ("qwen2.5", "<|im_start|>assistant\n"),
        ("llama3.2", "<|start_header_id|>assistant<|end_header_id|>\n\n"),
    ],
)
def test_sft_mask_is_each_assistant_turn_through_its_end_of_turn(
    loaded, folders, name, header
) -> None:
    ours, theirs = loaded(name)
    chat = TemplateChat(ours, ours.chat_template, str(folders[name]), TEMPLATE_KWARGS)
    messages = [*CONVERSATION, {"role": "user", "content": "Thanks."}]
    messages.append({"role": "assistant", "content": "def f():\n    return 1"})
    messages[2] = {**messages[2], "weight": 0}  # context, not trained
    (example,) = chat.examples(messages)
    full = theirs.apply_chat_template(messages, return_dict=False, **TEMPLATE_KWARGS)
    assert example.ids == full
    header_ids = theirs.encode(header, add_special_tokens=False)
    starts = [
        i + len(header_ids) for i in range(len(full)) if full[i : i + len(header_ids)] == header_ids
    ]
    expected = [False] * len(full)
    for start in starts[1:]:  # the first assistant turn is weight 0
        end = full.index(chat.end_of_turn, start)
        expected[start : end + 1] = [True] * (end + 1 - start)
    assert len(starts) == 3 and example.trained == expected
    trained = [i for i, t in zip(example.ids, example.trained, strict=True) if t]
    assert ours.decode(trained) == ("6" if name == "llama3.2" else "6\n") + "def f():\n    return 1"


def test_qwen3_rewriting_earlier_turns_trains_each_turn_on_its_own(loaded, folders) -> None:
    ours, theirs = loaded("qwen3")
    chat = chat_format(ours, str(folders["qwen3"]))
    messages = [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "<think>\nAdd them.\n</think>\n\n4"},
        {"role": "user", "content": "And 3+3?"},
        {"role": "assistant", "content": "6"},
    ]
    examples = chat.examples(messages)
    full = theirs.apply_chat_template(messages, return_dict=False)
    assert len(examples) == 2 and examples[0].ids != full[: len(examples[0].ids)]
    for turn, example in zip((2, 4), examples, strict=True):
        assert example.ids == theirs.apply_chat_template(messages[:turn], return_dict=False)
    first = [i for i, t in zip(examples[0].ids, examples[0].trained, strict=True) if t]
    second = [i for i, t in zip(examples[1].ids, examples[1].trained, strict=True) if t]
    assert theirs.decode(first) == "<think>\nAdd them.\n</think>\n\n4<|im_end|>"
    assert theirs.decode(second) == "<think>\n\n</think>\n\n6<|im_end|>"


def test_a_template_that_breaks_the_one_turn_prefix_is_refused(loaded, folders, tmp_path) -> None:
    shutil.copytree(folders["qwen2.5"], tmp_path / "model")
    (tmp_path / "model" / "chat_template.jinja").write_text(
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n\n{% endif %}"
    )
    tokenizer = load_tokenizer(tmp_path / "model")
    with pytest.raises(
        ValueError, match=r"model: its chat template cannot be masked exactly"
    ) as error:
        chat_format(tokenizer, str(tmp_path / "model"))
    assert "'<|im_start|>user\\nHello<|im_end|>\\n<|im_start|>assistant\\n\\n'" in str(error.value)
    skipped = Counter()
    good = chat_format(loaded("qwen2.5")[0], "qwen2.5")
    newline_first = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "\nx"}]
    assert encode_examples([newline_first], good, 64, skipped) == []
    assert sum(skipped.values()) == 1  # "\n" + "\n" merge across the turn's start: not exact


# ---------------------------------------------------------------------------- a base folder


def test_a_base_folder_without_a_template_gets_helox_markers_as_new_rows(
    folders, tmp_path, one_thread
) -> None:
    base = tmp_path / "base"
    model_config = tiny_config(32000, 64, hidden_size=16, num_layers=1, tie_word_embeddings=False)
    model = seeded_model(model_config)
    save_final(base, model, model_config, folders["mistral"], {"stage": "pretrain"})
    tokenizer = load_tokenizer(base)
    prepared = prepare_chat(tokenizer, "", "sft.chat_template", str(base))
    assert prepared.added_ids == [32000, 32001, 32002, 32003]
    assert prepared.tokenizer.vocab_size == 32004 == tokenizer.vocab_size + 4
    assert [prepared.tokenizer.token_id(m) for m in CHAT_MARKERS] == prepared.added_ids
    assert prepared.chat.end_of_turn == 32003 and 32003 in prepared.chat.stop_ids
    grown = add_token_rows(seeded_model(model_config), prepared.added_ids, known=32000)
    assert grown.config.vocab_size == 32004
    for matrix in (grown.model.embed_tokens.weight, grown.lm_head.weight):
        assert matrix.shape == (32004, 16)
        mean = matrix[:32000].mean(dim=0)
        assert all(torch.equal(matrix[i], mean) for i in prepared.added_ids)

    data = tmp_path / "sft.jsonl"
    with JsonlWriter(data) as writer:
        for i in range(8):
            writer.write({"instruction": f"Add {i} and 1.", "response": f"{i} + 1 = {i + 1}"})
    training = {"device": "cpu", "compile": False, "warmup_steps": 1, "eval_batches": 1}
    config = SFTConfig(
        seq_len=64,
        batch_size=2,
        total_steps=2,
        eval_steps=2,
        save_steps=2,
        val_fraction=0.25,
        **training,
    )
    run_sft(base, data, tmp_path / "sft", config, 1, TrackingConfig(enabled=False))
    _, tuned_config = load_final(tmp_path / "sft")
    assert tuned_config.vocab_size == 32004
    tuned = load_tokenizer(tmp_path / "sft")
    assert tuned.sha256 == tokenizer.sha256  # the shards of the base still fit it
    hf = AutoTokenizer.from_pretrained(tmp_path / "sft")
    messages = [{"role": "user", "content": "Add 2 and 1."}]
    expected = [1, 32001, *tuned.encode("Add 2 and 1."), 32003, 32002]
    assert chat_format(tuned, "sft").prompt(messages) == expected
    assert (
        hf.apply_chat_template(messages, add_generation_prompt=True, return_dict=False) == expected
    )
    assert read_json(tmp_path / "sft" / "generation_config.json")["eos_token_id"] == [2, 32003]
    generator = Generator(tmp_path / "sft", "cpu")
    reply = generator.reply(messages, SamplingConfig(max_new_tokens=4, temperature=0.0))
    assert isinstance(reply, str) and generator.chat.stop_ids == (32003, 2)


# ---------------------------------------------------------------------------- shards


def test_shards_of_a_151k_vocabulary_are_uint32_and_round_trip(
    loaded, folders, doc_parts, tmp_path
) -> None:
    part = tmp_path / "part-0.jsonl.zst"
    with JsonlWriter(part) as writer:
        for record in list(iter_jsonl(doc_parts[0]))[:40]:
            writer.write({**record, "text": record["text"][:1500]})
    texts = {unicodedata.normalize("NFC", record["text"]) for record in iter_jsonl(part)}
    tokenizer = loaded("qwen3")[0]
    config = ShardsConfig(parts=1, train_split=0.8, val_split=0.1, test_split=0.1)
    manifest = build_dataset_shards([part], tokenizer, tmp_path / "shards", config, seed=1)
    assert manifest["token_dtype"] == "uint32" and manifest["eos_id"] == tokenizer.eos
    for split in SPLITS:
        for name in manifest["splits"][split]["files"]:
            table = read_shard(tmp_path / "shards" / name)
            assert table.schema.field("tokens").type == pa.list_(pa.uint32())
            for ids in table.column("tokens").to_pylist():
                assert ids[-1] == tokenizer.eos and tokenizer.decode(ids) in texts
    manifest_of_tokenizer(tmp_path / "shards" / "manifest.json", folders["qwen3"], "")
    with pytest.raises(ValueError, match="tokenized with another tokenizer"):
        manifest_of_tokenizer(tmp_path / "shards" / "manifest.json", folders["qwen2.5"], "")
    llama = build_dataset_shards([part], loaded("llama3.2")[0], tmp_path / "llama", config, seed=1)
    first = read_shard(tmp_path / "llama" / llama["splits"]["train"]["files"][0]).column("tokens")
    assert first[0].as_py()[0] == 128000 and llama["adds_bos"] is True

    adopted = tmp_path / "tokenizer"
    report = adopt_tokenizer(
        folders["qwen2.5"], [part], adopted / "files", adopted / "eval.json", 5
    )
    assert report["kind"] == "tokenizer.json" and report["vocab_size"] == 151665
    assert sorted(path.name for path in (adopted / "files").iterdir()) == [
        "tokenizer.json",
        "tokenizer_config.json",
    ]


# ---------------------------------------------------------------------------- bad input


def test_bad_tokenizer_files_are_named(folders, tmp_path) -> None:
    (tmp_path / "none").mkdir()
    with pytest.raises(FileNotFoundError, match=r"none: no tokenizer: a model folder carries"):
        load_tokenizer(tmp_path / "none")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "tokenizer.json").write_text('{"model": {"type": "BPE"')
    with pytest.raises(ValueError, match=r"broken/tokenizer.json: not a tokenizer.json"):
        load_tokenizer(broken)
    unknown = tmp_path / "unknown"
    shutil.copytree(folders["mistral"], unknown)
    config = read_json(unknown / "tokenizer_config.json")
    (unknown / "tokenizer_config.json").write_text(json.dumps({**config, "eos_token": "<|nope|>"}))
    with pytest.raises(ValueError, match=r"unknown/tokenizer_config.json: eos_token '<\|nope\|>'"):
        load_tokenizer(unknown)
    (unknown / "tokenizer_config.json").write_text("{\n  not json")
    with pytest.raises(ValueError, match=r"unknown/tokenizer_config.json:2: not valid JSON"):
        load_tokenizer(unknown)
    (unknown / "tokenizer_config.json").write_text("{}")
    (unknown / "generation_config.json").write_text(json.dumps({"eos_token_id": 999999}))
    with pytest.raises(ValueError, match=r"generation_config.json: eos_token_id 999999 is not"):
        load_tokenizer(unknown)
