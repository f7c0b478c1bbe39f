from __future__ import annotations

import json

import pytest
import torch

from helox.chat import END, ROLE_IDS, render_chat, render_prompt
from helox.config import TokenizerConfig
from helox.sft_data import (
    IGNORE_INDEX,
    SFTBatches,
    collate,
    encode_examples,
    read_instruction_data,
)
from helox.tokenizer import build_tokenizer, load_tokenizer


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
    ]
    path.write_bytes(("\n".join(lines) + "\n").encode() + b"\xff\xfe\n")
    data = read_instruction_data(path)
    assert len(data.conversations) == 3
    assert data.conversations[2][0]["content"] == "x\n\nctx"
    assert sum(data.skipped.values()) == 4
    assert f"{path}:2: malformed JSON" in data.skipped_examples[0]
    assert any(e.startswith(f"{path}:3:") and '"response"' in e for e in data.skipped_examples)
    assert any(e.startswith(f"{path}:7: invalid UTF-8") for e in data.skipped_examples)


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
