from __future__ import annotations

import codecs
import gzip
import json
import re
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import zstandard

from helox.model.config import ModelConfig
from helox.model.network import create_model_from_config
from helox.tokens.chat import END, ROLE_IDS, HeloxChat, render_chat, render_prompt
from helox.tokens.tokenizer import TokenizerConfig, build_tokenizer
from helox.tokens.vocab import load_tokenizer
from helox.tune.sft_data import (
    IGNORE_INDEX,
    SFTBatches,
    collate,
    collate_packed,
    encode_examples,
    padding_fraction,
    read_instruction_data,
)


@pytest.fixture(scope="module")
def processor(doc_parts, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tok")
    build_tokenizer(doc_parts, folder, TokenizerConfig(vocab_size=800, eval_docs=5))
    return load_tokenizer(folder / "spm.model")


CONVERSATION = [
    {"role": "system", "content": "You write Python."},
    {"role": "user", "content": "Reverse a list."},
    {"role": "assistant", "content": "return items[::-1]"},
    {"role": "user", "content": "And a string?"},
    {"role": "assistant", "content": "return text[::-1]"},
]


def test_mask_covers_exactly_assistant_content_and_end_markers(processor):
    chat = render_chat(CONVERSATION, processor)
    trained = [i for i, t in zip(chat.ids, chat.trained, strict=True) if t]
    expected = []
    for message in CONVERSATION:
        if message["role"] == "assistant":
            expected += processor.encode(message["content"]) + [END]
    assert trained == expected
    assert chat.ids.count(ROLE_IDS["assistant"]) == 2
    assert not any(t for i, t in zip(chat.ids, chat.trained, strict=True) if i in ROLE_IDS.values())


def test_prompt_rendering_matches_training_rendering(processor):
    prompt = render_prompt(CONVERSATION[:2], processor)
    full = render_chat(CONVERSATION[:3], processor).ids
    assert full[: len(prompt)] == prompt


def test_collate_shifts_labels_and_masks_padding(processor):
    examples = encode_examples([CONVERSATION, CONVERSATION[:3]], HeloxChat(processor), seq_len=512)
    inputs, labels = collate(examples, processor.pad)
    assert inputs.shape == labels.shape == (2, len(examples[0].ids) - 1)
    row = examples[1]
    width = len(row.ids) - 1
    assert torch.equal(inputs[1, :width], torch.tensor(row.ids[:-1]))
    assert (labels[1, width:] == IGNORE_INDEX).all()
    trained_targets = [i for i, t in zip(row.ids[1:], row.trained[1:], strict=True) if t]
    assert labels[1][labels[1] != IGNORE_INDEX].tolist() == trained_targets


def test_reader_skips_bad_lines_with_file_and_line(tmp_path):
    path = tmp_path / "data.jsonl"
    lines = [
        json.dumps({"instruction": "a", "response": "b"}),
        "{broken",
        json.dumps({"instruction": "a"}),
        json.dumps({"messages": [{"role": "user", "content": "hi"}]}),
        json.dumps({"messages": CONVERSATION}),
        json.dumps({"instruction": "x", "input": "ctx", "response": "y"}),
        "[" * 100_000 + "]" * 100_000,
    ]
    path.write_bytes(("\n".join(lines) + "\n").encode() + b"\xff\xfe\n")
    data = read_instruction_data(path)
    assert len(data.items) == 3
    assert data.items[2][0]["content"] == "x\n\nctx"
    assert sum(data.skipped.values()) == 5
    assert f"{path}:7: JSON nested too deeply" in data.skipped_examples
    assert f"{path}:2: malformed JSON" in data.skipped_examples[0]
    assert any(e.startswith(f"{path}:3:") and '"response"' in e for e in data.skipped_examples)
    assert any(e.startswith(f"{path}:8: invalid UTF-8") for e in data.skipped_examples)


def test_reader_refuses_a_file_with_nothing_usable(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("[1, 2]\n")
    with pytest.raises(ValueError, match="no usable instruction examples"):
        read_instruction_data(path)


TRANSLATE = [
    {"role": "user", "content": "Translate into French.\n\nThe cat is on the table."},
    {"role": "assistant", "content": "Le chat est sur la table."},
]
PUBLIC_INSTRUCTION_RECORDS = [
    # Alpaca: the answer is "output"
    {"instruction": "Translate into French.", "input": "The cat is on the table.",
     "output": "Le chat est sur la table."},
    # Dolly: the input is "context"
    {"instruction": "Translate into French.", "context": "The cat is on the table.",
     "response": "Le chat est sur la table.", "category": "open_qa"},
    # OpenAI / Hugging Face chat, content as a list of text parts
    {"messages": [
        {"role": "user", "content": [
            {"type": "text", "text": "Translate into French.\n\n"},
            {"type": "text", "text": "The cat is on the table."},
        ]},
        {"role": "assistant", "content": [{"type": "text", "text": "Le chat est sur la table."}]},
    ]},
    # TRL prompt-completion
    {"prompt": "Translate into French.\n\nThe cat is on the table.",
     "completion": "Le chat est sur la table."},
]  # fmt: skip


def test_reader_reads_the_public_instruction_formats_alike(tmp_path):
    path = tmp_path / "public.jsonl"
    sharegpt = {
        "id": "7",
        "conversations": [
            {"from": "system", "value": "You write Python."},
            {"from": "human", "value": "Reverse a list."},
            {"from": "gpt", "value": "return items[::-1]"},
            {"from": "human", "value": "And a string?"},
            {"from": "chatgpt", "value": "return text[::-1]"},
        ],
    }
    records = [*PUBLIC_INSTRUCTION_RECORDS, sharegpt]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    data = read_instruction_data(path)
    assert not data.skipped
    assert data.items == [TRANSLATE] * 4 + [CONVERSATION]


def test_reader_names_the_field_it_cannot_read(tmp_path):
    path = tmp_path / "odd.jsonl"
    question = {"role": "user", "content": "What is the weather in Paris?"}
    records = [
        {"messages": [question, {"role": "tool", "content": '{"temp": 18}'}]},
        {"messages": [question, {"role": "assistant", "content": None, "tool_calls": [{}]}]},
        {"messages": [question, {"role": "assistant", "content": ""}]},
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
        {"conversations": [{"from": "human", "value": "hi"}, {"from": "tool", "value": "{}"}]},
        {"instruction": "Translate.", "input": "Cat.", "context": "Dog.", "output": "Chat."},
        {"question": "What is 2 + 2?", "answer": "4"},
        {"messages": [question, {"role": "assistant", "content": "It is 18 °C."}]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    data = read_instruction_data(path)
    assert data.items == [[question, {"role": "assistant", "content": "It is 18 °C."}]]
    reasons = [e.removeprefix(f"{path}:") for e in data.skipped_examples]
    assert reasons == [
        '1: "messages"[1] has role "tool"; the chat template has system, user, assistant',
        '2: "messages"[1] holds tool calls, which the chat template cannot render',
        '3: "messages"[1] is an assistant turn with empty content',
        '4: "messages"[0] has a "image_url" part; only text parts can be rendered',
        '5: "conversations"[1] is from "tool"; expected one of system, human, user, gpt, '
        "assistant, chatgpt, bing, bard",
        '6: "input" and "context" differ; keep one of them',
        "7: no instruction format has the keys ['answer', 'question']: expected \"messages\", "
        '"conversations", "prompt" and "completion", or "instruction" with "response" or '
        '"output"',
    ]


def test_reader_takes_json_arrays_compressed_files_parquet_and_a_byte_order_mark(tmp_path):
    records = PUBLIC_INSTRUCTION_RECORDS[:2]
    lines = "".join(json.dumps(r) + "\n" for r in records).encode()
    (tmp_path / "alpaca_data.json").write_text(json.dumps(records, indent=4))
    (tmp_path / "one_line.json").write_text(json.dumps(records))
    (tmp_path / "bom.jsonl").write_bytes(codecs.BOM_UTF8 + lines)
    (tmp_path / "data.jsonl.gz").write_bytes(gzip.compress(lines))
    frames = [zstandard.ZstdCompressor().compress(part) for part in (lines[:40], lines[40:])]
    two_frames = frames[0] + frames[1]
    (tmp_path / "data.jsonl.zst").write_bytes(two_frames)
    pq.write_table(pa.Table.from_pylist([records[1]] * 2), tmp_path / "hub.parquet")  # Dolly
    for name in ("alpaca_data.json", "one_line.json", "bom.jsonl", "data.jsonl.gz",
                 "data.jsonl.zst", "hub.parquet"):  # fmt: skip
        data = read_instruction_data(tmp_path / name)
        assert (data.items, dict(data.skipped)) == ([TRANSLATE, TRANSLATE], {}), name

    array = tmp_path / "array.json"
    array.write_text(json.dumps([records[0], {"instruction": "x"}], indent=2))
    data = read_instruction_data(array)
    assert data.skipped_examples == [
        f'{array}[1]: missing or empty string field "response" (or Alpaca\'s "output")'
    ]
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(records, indent=2).replace('"\n  }', '",\n  }', 1))
    with pytest.raises(ValueError, match=rf"^{re.escape(str(broken))}:6:3: malformed JSON array"):
        read_instruction_data(broken)
    for name, cut in (
        ("cut.jsonl.gz", gzip.compress(lines)[:-12]),
        ("cut.jsonl.zst", two_frames[:-9]),
    ):
        (tmp_path / name).write_bytes(cut)
        with pytest.raises(
            ValueError,
            match=rf"^{re.escape(str(tmp_path / name))}: cannot decompress it to the end",
        ):
            read_instruction_data(tmp_path / name)
    lines_after_an_array = tmp_path / "lines.jsonl"
    lines_after_an_array.write_text("[1, 2]\n" + lines.decode())
    data = read_instruction_data(lines_after_an_array)
    assert data.items == [TRANSLATE, TRANSLATE]
    assert data.skipped_examples == [f"{lines_after_an_array}:1: expected a JSON object, got array"]


def test_reader_logs_the_first_skips_and_counts_the_rest(tmp_path, caplog):
    path = tmp_path / "text.jsonl"
    plain = {"text": "### Human: Hi.### Assistant: Hello."}
    lines = [plain] * 25 + [PUBLIC_INSTRUCTION_RECORDS[0]]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    data = read_instruction_data(path)
    assert data.items == [TRANSLATE] and sum(data.skipped.values()) == 25
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipping")]
    assert len(logged) == len(data.skipped_examples) == 20
    assert f"{path}: 5 more records skipped (not logged one by one)" in caplog.text


def test_openai_weight_zero_keeps_an_assistant_turn_as_context(tmp_path, processor):
    path = tmp_path / "openai.jsonl"
    weighted = [*CONVERSATION[:2], {**CONVERSATION[2], "weight": 0}, *CONVERSATION[3:]]
    records = [
        {"messages": weighted},
        {"messages": [*CONVERSATION[:2], {**CONVERSATION[2], "weight": 0}]},
        {"messages": [*CONVERSATION[:2], {**CONVERSATION[2], "weight": 0.5}]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    data = read_instruction_data(path)
    assert [e.removeprefix(f"{path}:") for e in data.skipped_examples] == [
        "2: no assistant turn to learn from",
        '3: "messages"[2] has "weight" 0.5; it may be 0 or 1',
    ]
    chat = render_chat(data.items[0], processor)
    trained = [i for i, t in zip(chat.ids, chat.trained, strict=True) if t]
    assert trained == processor.encode("return text[::-1]") + [END]
    assert chat.ids == render_chat(CONVERSATION, processor).ids


def test_encoding_counts_conversations_cut_before_any_response(processor, caplog):
    long_system = {"role": "system", "content": "Answer in French. " * 200}
    conversations = [TRANSLATE, [long_system, *TRANSLATE], [*TRANSLATE, *TRANSLATE * 50]]
    skipped = Counter()
    examples = encode_examples(conversations, HeloxChat(processor), seq_len=128, skipped=skipped)
    assert len(examples) == 2 and all(len(e.ids) <= 129 for e in examples)
    assert skipped == {"no response token within seq_len (128 tokens)": 1}
    assert "2 of 3 conversations are longer than seq_len (128 tokens)" in caplog.text


def test_batches_are_seeded_and_resume_exactly(processor):
    examples = encode_examples(
        [CONVERSATION[: 3 + (i % 3)] for i in range(7)], HeloxChat(processor), 256
    )
    first = SFTBatches(examples, 3, seed=5, pad_id=processor.pad)
    run = [next(first) for _ in range(5)]
    second = SFTBatches(examples, 3, seed=5, pad_id=processor.pad)
    for _ in range(2):
        next(second)
    resumed = SFTBatches(examples, 3, seed=5, pad_id=processor.pad)
    resumed.load_state(second.state())
    for expected in run[2:]:
        got = next(resumed)
        assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))


def varied_examples(processor, count: int = 11):
    """Conversations of one to two exchanges with answers of different lengths."""
    conversations = [
        [
            {"role": "user", "content": f"Question {i}: what does step {i} do?"},
            {"role": "assistant", "content": "It repeats. " * (1 + i % 4)},
            *CONVERSATION[3 : 3 + 2 * (i % 2)],
        ]
        for i in range(count)
    ]
    return encode_examples(conversations, HeloxChat(processor), seq_len=96)


def test_packed_rows_restart_positions_and_keep_labels(processor):
    examples = varied_examples(processor)[:3]
    inputs, labels, extra = collate_packed([examples], width=200, pad_id=processor.pad)
    segments, positions = extra["segment_ids"][0], extra["position_ids"][0]
    offset = 0
    for index, example in enumerate(examples):
        span = slice(offset, offset + len(example.ids) - 1)
        assert torch.equal(inputs[0, span], torch.tensor(example.ids[:-1]))
        assert torch.equal(positions[span], torch.arange(len(example.ids) - 1))
        assert bool((segments[span] == index).all())
        separate_labels = collate([example], processor.pad)[1][0]
        assert torch.equal(labels[0, span], separate_labels)
        offset += len(example.ids) - 1
    assert bool((segments[offset:] == -1).all())
    assert bool((labels[0, offset:] == IGNORE_INDEX).all())


def test_packed_rows_score_each_conversation_as_it_scores_alone(processor):
    """Attention and positions never cross a conversation: every token of a packed row gets
    the logits it gets with its conversation alone, and the row's loss is theirs."""
    torch.manual_seed(0)
    model = create_model_from_config(
        ModelConfig(
            vocab_size=processor.vocab_size,
            hidden_size=32,
            num_layers=2,
            num_attention_heads=4,
            max_position_embeddings=256,
            initializer_range=0.5,
        )
    ).eval()
    examples = varied_examples(processor)[:4]
    inputs, labels, extra = collate_packed(
        [examples[:2], examples[2:]], width=250, pad_id=processor.pad
    )
    with torch.no_grad():
        packed = model(inputs, labels, **extra)
        leaky = model(inputs).logits
    separate_nats = 0.0
    for row, pair in enumerate((examples[:2], examples[2:])):
        offset = 0
        for example in pair:
            alone_inputs, alone_labels = collate([example], processor.pad)
            with torch.no_grad():
                alone = model(alone_inputs, alone_labels)
            span = slice(offset, offset + alone_inputs.size(1))
            torch.testing.assert_close(packed.logits[row, span], alone.logits[0])
            separate_nats += alone.loss.item() * int((alone_labels != IGNORE_INDEX).sum())
            offset = span.stop
    second = len(examples[0].ids) - 1
    assert (leaky[0, second : second + 5] - packed.logits[0, second : second + 5]).abs().max() > 0.1
    scored = int((labels != IGNORE_INDEX).sum())
    assert float(packed.loss) * scored == pytest.approx(separate_nats, rel=1e-5)


def test_packing_takes_every_example_once_per_epoch_and_resumes(processor):
    examples = varied_examples(processor)
    packed = SFTBatches(examples, batch_size=1, seed=3, pack_width=120, pad_id=processor.pad)
    seen = []
    for _ in packed.rows():
        inputs, _, extra = next(packed)
        assert inputs.shape == (1, 120)
        segments = extra["segment_ids"][0]
        for segment in range(int(segments.max()) + 1):
            seen.append(inputs[0, segments == segment].tolist())
    assert sorted(seen) == sorted(e.ids[:-1] for e in examples)
    assert len(seen) > len(packed.rows()), "no row holds more than one conversation"

    first = SFTBatches(examples, 2, seed=3, pack_width=120, pad_id=processor.pad)
    run = [next(first) for _ in range(6)]
    resumed = SFTBatches(examples, 2, seed=3, pack_width=120, pad_id=processor.pad)
    for _ in range(2):
        next(resumed)
    restored = SFTBatches(examples, 2, seed=3, pack_width=120, pad_id=processor.pad)
    restored.load_state(resumed.state())
    for expected in run[2:]:
        inputs, labels, extra = next(restored)
        assert torch.equal(inputs, expected[0]) and torch.equal(labels, expected[1])
        assert torch.equal(extra["segment_ids"], expected[2]["segment_ids"])


def test_packing_saves_padding_and_refuses_an_example_wider_than_a_row(processor):
    examples = varied_examples(processor, count=40)
    packed = padding_fraction(SFTBatches(examples, 4, seed=1, pack_width=256, pad_id=processor.pad))
    unpacked = padding_fraction(SFTBatches(examples, 4, seed=1, pad_id=processor.pad))
    assert 0 <= packed < unpacked < 1
    with pytest.raises(ValueError, match="does not fit a row of 8"):
        SFTBatches(examples, 4, seed=1, pack_width=8, pad_id=processor.pad)
