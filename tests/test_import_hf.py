"""`helox import-hf`: a transformers-made Llama becomes a Helox folder scoring the same loss."""

from __future__ import annotations

import io
import json
import shutil
from itertools import islice
from pathlib import Path

import pytest
import sentencepiece as spm
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

from helox.cli.main import main
from helox.common.io import iter_texts, read_json, sha256_file
from helox.eval.bpb import evaluate_folder
from helox.model.config import ModelConfig
from helox.model.folder import load_final
from helox.model.import_hf import import_hf_folder
from helox.model.network import IGNORE_INDEX
from helox.tokens.loader import TokenStream, eval_batches
from helox.tokens.shards import ShardsConfig, build_dataset_shards
from helox.tokens.tokenizer import TokenizerConfig, build_tokenizer
from helox.tokens.vocab import load_tokenizer
from helox.train.config import TrainingConfig
from helox.train.pretrain import run_pretrain
from helox.train.tracking import TrackingConfig
from helox.tune.config import SFTConfig
from helox.tune.sft import run_sft

VOCAB = 700
SEQ_LEN = 64


@pytest.fixture(scope="module")
def tokenizer_path(doc_parts, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tok")
    build_tokenizer(doc_parts, folder, TokenizerConfig(vocab_size=VOCAB, eval_docs=5))
    return folder / "spm.model"


@pytest.fixture(scope="module")
def shards(doc_parts, tokenizer_path, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("shards")
    config = ShardsConfig(parts=1, train_split=0.8, val_split=0.1, test_split=0.1)
    build_dataset_shards(doc_parts, tokenizer_path, folder, config, seed=1)
    return folder


def llama_folder(folder: Path, tokenizer_path: Path, **overrides) -> LlamaForCausalLM:
    """A randomly initialised transformers Llama saved as safetensors, with `tokenizer_path`."""
    fields = {
        "vocab_size": VOCAB,
        "hidden_size": 64,
        "intermediate_size": 112,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 128,
        "rope_parameters": {"rope_type": "default", "rope_theta": 50_000.0},
        "rms_norm_eps": 1e-6,
        "initializer_range": 0.1,
        "tie_word_embeddings": False,
    }
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**{**fields, **overrides})).eval()
    model.save_pretrained(folder, safe_serialization=True)
    shutil.copyfile(tokenizer_path, folder / "tokenizer.model")
    return model


def transformers_loss(model: LlamaForCausalLM, batches) -> float:
    """Mean cross-entropy of the labelled tokens of Helox's (input, shifted labels) batches."""
    nats, count = 0.0, 0
    with torch.no_grad():
        for input_ids, labels in batches:
            logits = model(input_ids).logits.float()
            nats += float(
                F.cross_entropy(
                    logits.flatten(0, 1),
                    labels.flatten(),
                    ignore_index=IGNORE_INDEX,
                    reduction="sum",
                )
            )
            count += int((labels != IGNORE_INDEX).sum())
    return nats / count


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_an_imported_llama_scores_the_loss_transformers_scores(
    tmp_path, tokenizer_path, shards, tied
) -> None:
    reference = llama_folder(tmp_path / "hf", tokenizer_path, tie_word_embeddings=tied)
    import_hf_folder(tmp_path / "hf", tmp_path / "final")
    model, config = load_final(tmp_path / "final")
    assert (config.num_key_value_heads, config.rope_theta, config.norm_eps) == (2, 50_000.0, 1e-6)
    assert config.tie_word_embeddings is tied
    batches = list(
        islice(eval_batches(TokenStream(shards / "manifest.json", "val"), SEQ_LEN, 4), 3)
    )
    with torch.no_grad():
        helox_loss = sum(
            float(model(x, y).loss) * int((y != IGNORE_INDEX).sum()) for x, y in batches
        ) / sum(int((y != IGNORE_INDEX).sum()) for _, y in batches)
    assert helox_loss == pytest.approx(transformers_loss(reference, batches), abs=1e-4)
    assert read_json(tmp_path / "final" / "metrics.json")["stage"] == "import"


def test_import_hf_then_eval_on_shards_matches_transformers(
    tmp_path, tokenizer_path, shards, capsys
) -> None:
    reference = llama_folder(tmp_path / "hf", tokenizer_path)
    assert main(["import-hf", str(tmp_path / "hf"), str(tmp_path / "final")]) == 0
    capsys.readouterr()
    command = ["eval", str(tmp_path / "final"), "--shards", str(shards), "--seq-len", str(SEQ_LEN)]
    assert main([*command, "--batch-size", "4", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    stream = TokenStream(shards / "manifest.json", "val")
    expected = transformers_loss(reference, eval_batches(stream, SEQ_LEN, 4))
    assert result["loss"] == pytest.approx(expected, abs=1e-4)
    assert result["tokens"] == stream.num_windows(SEQ_LEN) * SEQ_LEN


def plain_sentencepiece(doc_parts, folder: Path) -> Path:
    """A SentencePiece model with only <unk>, <s>, </s> reserved, as most Llama tokenizers."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=islice(iter_texts(doc_parts), 300),
        model_writer=model,
        vocab_size=VOCAB,
        byte_fallback=True,
        max_sentence_length=100_000,
    )
    path = folder / "plain.model"
    path.write_bytes(model.getvalue())
    return path


def test_a_tokenizer_of_its_own_is_carried_and_one_too_large_is_refused(tmp_path, doc_parts):
    plain = plain_sentencepiece(doc_parts, tmp_path)
    llama_folder(tmp_path / "hf", plain)
    import_hf_folder(tmp_path / "hf", tmp_path / "final")
    tokenizer = load_tokenizer(tmp_path / "final")
    assert (tokenizer.kind, tokenizer.bos, tokenizer.eos, tokenizer.pad) == (
        "sentencepiece",
        1,
        2,
        2,
    )
    assert (tmp_path / "final" / "tokenizer.model").read_bytes() == plain.read_bytes()
    llama_folder(tmp_path / "small", plain, vocab_size=VOCAB - 100)
    with pytest.raises(ValueError, match=rf"tokenizer.model has {VOCAB} tokens but .*config.json"):
        import_hf_folder(tmp_path / "small", tmp_path / "refused")
    assert not (tmp_path / "refused").exists()


def test_pretraining_and_sft_continue_an_imported_llama(
    tmp_path, tokenizer_path, shards, doc_parts
) -> None:
    llama_folder(tmp_path / "hf", tokenizer_path)
    imported = import_hf_folder(tmp_path / "hf", tmp_path / "imported")
    training = {"device": "cpu", "compile": False, "warmup_steps": 1, "eval_batches": 2}
    start = evaluate_folder(imported, shards, seq_len=SEQ_LEN, batch_size=4, max_batches=2)
    pretrain = TrainingConfig(
        seq_len=SEQ_LEN,
        batch_size=4,
        learning_rate=3e-3,
        total_steps=8,
        eval_steps=8,
        save_steps=8,
        log_steps=4,
        **training,
    )
    metrics = run_pretrain(
        shards / "manifest.json",
        imported / "tokenizer.model",
        tmp_path / "pretrain",
        ModelConfig(),
        pretrain,
        1,
        TrackingConfig(enabled=False),
        init_dir=imported,
    )
    assert metrics["val_loss"] < start["loss"]
    assert metrics["lineage"]["init_sha256"] == sha256_file(imported / "model.safetensors")
    _, config = load_final(tmp_path / "pretrain")
    assert (config.num_key_value_heads, config.rope_theta) == (2, 50_000.0)
    data = tmp_path / "sft.jsonl"
    pairs = [{"instruction": f"Add {i}.", "response": f"x + {i}"} for i in range(12)]
    data.write_text("".join(json.dumps(pair) + "\n" for pair in pairs))
    sft = SFTConfig(
        seq_len=SEQ_LEN,
        batch_size=2,
        total_steps=4,
        eval_steps=4,
        save_steps=4,
        val_fraction=0.25,
        **training,
    )
    tuned = run_sft(imported, data, tmp_path / "sft", sft, 1, TrackingConfig(enabled=False))
    assert tuned["val_loss"] < tuned["base_val_loss"]
