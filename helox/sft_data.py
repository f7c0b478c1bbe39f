"""Instruction data for SFT: reading pairs or chats, rendering, splitting, batching."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import sentencepiece as spm
import torch

from helox.chat import ROLES, RenderedChat, pair_to_messages, render_chat
from helox.tokenizer import SPECIAL_IDS

log = logging.getLogger(__name__)

IGNORE_INDEX = -100


@dataclass
class InstructionData:
    """Conversations read from a JSONL file, with every skipped line counted by reason."""

    conversations: list[list[dict[str, str]]] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    skipped_examples: list[str] = field(default_factory=list)

    def skip(self, where: str, reason: str) -> None:
        self.skipped[reason] += 1
        if len(self.skipped_examples) < 20:
            self.skipped_examples.append(f"{where}: {reason}")
        log.warning("skipping %s: %s", where, reason)


def parse_example(record: object) -> list[dict[str, str]]:
    """One JSONL object as a conversation; raises ValueError saying what is wrong."""
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    if "messages" in record:
        messages = record["messages"]
        if not isinstance(messages, list) or not messages:
            raise ValueError('"messages" must be a non-empty list')
        for message in messages:
            if not isinstance(message, dict) or message.get("role") not in ROLES:
                raise ValueError(f'each message needs "role" in {list(ROLES)}')
            if not isinstance(message.get("content"), str):
                raise ValueError('each message needs a string "content"')
        if not any(m["role"] == "assistant" for m in messages):
            raise ValueError("no assistant turn to learn from")
        return [{"role": m["role"], "content": m["content"]} for m in messages]
    for key in ("instruction", "response"):
        if not isinstance(record.get(key), str) or not record[key].strip():
            raise ValueError(f'missing or empty string field "{key}"')
    extra = record.get("input", "")
    if not isinstance(extra, str):
        raise ValueError('"input" must be a string')
    return pair_to_messages(record["instruction"], record["response"], extra)


def read_instruction_data(path: str | os.PathLike) -> InstructionData:
    """Read `{"instruction","response"[,"input"]}` or `{"messages": [...]}` JSONL lines."""
    data = InstructionData()
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            where = f"{path}:{number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                data.skip(where, f"invalid UTF-8 ({error.reason})")
                continue
            if not line.strip():
                continue
            try:
                data.conversations.append(parse_example(json.loads(line)))
            except json.JSONDecodeError as error:
                data.skip(where, f"malformed JSON ({error.msg})")
            except ValueError as error:
                data.skip(where, str(error))
    if not data.conversations:
        raise ValueError(
            f"{path}: no usable instruction examples; skipped: {dict(data.skipped) or 'none'}"
        )
    return data


def is_validation(conversation: list[dict[str, str]], seed: int, fraction: float) -> bool:
    """A seeded hash of the conversation decides whether it is held out."""
    text = json.dumps(conversation, sort_keys=True).encode("utf-8", "surrogatepass")
    digest = hashlib.blake2b(text, digest_size=8, key=seed.to_bytes(8, "little")).digest()
    return int.from_bytes(digest, "little") / 2**64 < fraction


def encode_examples(
    conversations: list[list[dict[str, str]]], processor: spm.SentencePieceProcessor, seq_len: int
) -> list[RenderedChat]:
    """Render conversations, cut to seq_len + 1 tokens, and drop those with nothing to learn."""
    rendered = []
    for conversation in conversations:
        chat = render_chat(conversation, processor)
        chat = RenderedChat(chat.ids[: seq_len + 1], chat.trained[: seq_len + 1])
        if any(chat.trained[1:]):
            rendered.append(chat)
    return rendered


def collate(examples: list[RenderedChat]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad to the batch's longest example; labels are next tokens where trained, else ignored."""
    width = max(len(e.ids) for e in examples) - 1
    inputs = np.full((len(examples), width), SPECIAL_IDS["<pad>"], dtype=np.int64)
    labels = np.full((len(examples), width), IGNORE_INDEX, dtype=np.int64)
    for row, example in enumerate(examples):
        ids = np.asarray(example.ids, dtype=np.int64)
        trained = np.asarray(example.trained[1:], dtype=bool)
        inputs[row, : len(ids) - 1] = ids[:-1]
        labels[row, : len(ids) - 1] = np.where(trained, ids[1:], IGNORE_INDEX)
    return torch.from_numpy(inputs), torch.from_numpy(labels)


class SFTBatches:
    """Endless batches of examples in an order fixed by (seed, epoch); position restorable."""

    def __init__(self, examples: list[RenderedChat], batch_size: int, seed: int):
        if not examples:
            raise ValueError("no SFT examples to train on")
        self.examples = examples
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0
        self.index = 0

    def _order(self) -> np.ndarray:
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.examples))

    def __iter__(self):
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        order = self._order()
        chosen = []
        while len(chosen) < self.batch_size:
            if self.index >= len(order):
                self.epoch += 1
                self.index = 0
                order = self._order()
            chosen.append(self.examples[order[self.index]])
            self.index += 1
        return collate(chosen)

    def state(self) -> dict:
        return {"epoch": self.epoch, "index": self.index}

    def load_state(self, state: dict) -> None:
        self.epoch = int(state["epoch"])
        self.index = int(state["index"])


def eval_batches(examples: list[RenderedChat], batch_size: int, max_batches: int):
    """The held-out examples in file order, as at most `max_batches` batches."""
    for start in range(0, min(len(examples), batch_size * max_batches), batch_size):
        yield collate(examples[start : start + batch_size])
