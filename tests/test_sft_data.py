from __future__ import annotations

import json

import pytest
import torch

from helox.chat import END, ROLE_IDS, render_chat, render_prompt
from helox.config import ModelConfig, TokenizerConfig
from helox.model import create_model_from_config
from helox.sft_data import (
    IGNORE_INDEX,
    SFTBatches,
    collate,
    collate_packed,
    encode_examples,
    padding_fraction,
    read_instruction_data,
)
from helox.tokenizer import build_tokenizer
from helox.vocab import load_tokenizer


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
    examples = encode_examples([CONVERSATION, CONVERSATION[:3]], processor, seq_len=512)
    inputs, labels = collate(examples)
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


def test_batches_are_seeded_and_resume_exactly(processor):
    examples = encode_examples([CONVERSATION[: 3 + (i % 3)] for i in range(7)], processor, 256)
    first = SFTBatches(examples, 3, seed=5)
    run = [next(first) for _ in range(5)]
    second = SFTBatches(examples, 3, seed=5)
    for _ in range(2):
        next(second)
    resumed = SFTBatches(examples, 3, seed=5)
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
    return encode_examples(conversations, processor, seq_len=96)


def test_packed_rows_restart_positions_and_keep_labels(processor):
    examples = varied_examples(processor)[:3]
    inputs, labels, extra = collate_packed([examples], width=200)
    segments, positions = extra["segment_ids"][0], extra["position_ids"][0]
    offset = 0
    for index, example in enumerate(examples):
        span = slice(offset, offset + len(example.ids) - 1)
        assert torch.equal(inputs[0, span], torch.tensor(example.ids[:-1]))
        assert torch.equal(positions[span], torch.arange(len(example.ids) - 1))
        assert bool((segments[span] == index).all())
        separate_labels = collate([example])[1][0]
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
            vocab_size=processor.get_piece_size(),
            hidden_size=32,
            num_layers=2,
            num_attention_heads=4,
            max_position_embeddings=256,
            initializer_range=0.5,
        )
    ).eval()
    examples = varied_examples(processor)[:4]
    inputs, labels, extra = collate_packed([examples[:2], examples[2:]], width=250)
    with torch.no_grad():
        packed = model(inputs, labels, **extra)
        leaky = model(inputs).logits
    separate_nats = 0.0
    for row, pair in enumerate((examples[:2], examples[2:])):
        offset = 0
        for example in pair:
            alone_inputs, alone_labels = collate([example])
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
    packed = SFTBatches(examples, batch_size=1, seed=3, pack_width=120)
    seen = []
    for _ in packed.rows():
        inputs, _, extra = next(packed)
        assert inputs.shape == (1, 120)
        segments = extra["segment_ids"][0]
        for segment in range(int(segments.max()) + 1):
            seen.append(inputs[0, segments == segment].tolist())
    assert sorted(seen) == sorted(e.ids[:-1] for e in examples)
    assert len(seen) > len(packed.rows()), "no row holds more than one conversation"

    first = SFTBatches(examples, 2, seed=3, pack_width=120)
    run = [next(first) for _ in range(6)]
    resumed = SFTBatches(examples, 2, seed=3, pack_width=120)
    for _ in range(2):
        next(resumed)
    restored = SFTBatches(examples, 2, seed=3, pack_width=120)
    restored.load_state(resumed.state())
    for expected in run[2:]:
        inputs, labels, extra = next(restored)
        assert torch.equal(inputs, expected[0]) and torch.equal(labels, expected[1])
        assert torch.equal(extra["segment_ids"], expected[2]["segment_ids"])


def test_packing_saves_padding_and_refuses_an_example_wider_than_a_row(processor):
    examples = varied_examples(processor, count=40)
    packed = padding_fraction(SFTBatches(examples, 4, seed=1, pack_width=256))
    unpacked = padding_fraction(SFTBatches(examples, 4, seed=1))
    assert 0 <= packed < unpacked < 1
    with pytest.raises(ValueError, match="does not fit a row of 8"):
        SFTBatches(examples, 4, seed=1, pack_width=8)
