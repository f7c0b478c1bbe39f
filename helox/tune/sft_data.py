"""Instruction data for SFT: reading records (in the formats of helox.tune.formats, from
JSON lines, a JSON array or Parquet), rendering, splitting, batching.

DPO reads, renders and packs its preference pairs with the same functions (helox.tune.dpo_data).
"""

from __future__ import annotations

import codecs
import hashlib
import io
import json
import logging
import os
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, ClassVar, Generic, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import Tensor

from helox.data.packed import CorruptStreamError, open_unpacked
from helox.tokens.chat import ChatFormat, RenderedChat
from helox.tokens.loader import ShuffledBatches
from helox.tune.formats import parse_example

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
SKIPS_SHOWN = 20  # skipped records logged and kept one by one; the rest are only counted
T = TypeVar("T")
Unit = TypeVar("Unit")  # what a tuning batch is made of: an SFT row, a DPO pair


@dataclass
class JsonlExamples(Generic[T]):
    """Examples read from a file, with every skipped record counted by reason and the first
    SKIPS_SHOWN of them, with file and line, logged and kept."""

    items: list[T] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    skipped_examples: list[str] = field(default_factory=list)

    def skip(self, where: str, reason: str) -> None:
        self.skipped[reason] += 1
        if len(self.skipped_examples) < SKIPS_SHOWN:
            self.skipped_examples.append(f"{where}: {reason}")
            log.warning("skipping %s: %s", where, reason)


def file_records(path: str | os.PathLike, data: JsonlExamples) -> Iterator[tuple[str, object]]:
    """(where, record) for each record of a JSON-lines file, of a file that is one JSON
    array, plain or packed (.gz, .bz2, .xz, .zst), or of a Parquet file (as the Hugging Face Hub
    serves datasets); JSON lines that do not decode or parse are skipped into `data` with
    their file and line. A compressed file cut short is refused whole."""
    if str(path).endswith(".parquet"):
        yield from parquet_records(path)
        return
    try:
        with open_unpacked(path) as stream:
            if stream.peek(1 << 16).removeprefix(codecs.BOM_UTF8).lstrip().startswith(b"["):
                content = stream.read()
                records = json_array(path, content)
                if records is not None:
                    yield from ((f"{path}[{i}]", record) for i, record in enumerate(records))
                    return
                stream = io.BytesIO(content)
            yield from json_lines(path, stream, data)
    except CorruptStreamError as error:
        raise ValueError(f"{path}: cannot decompress it to the end ({error})") from error


def parquet_records(path: str | os.PathLike) -> Iterator[tuple[str, object]]:
    """(where, row) for each row of a Parquet file, nested columns as lists and objects."""
    try:
        rows = pq.ParquetFile(path)
    except pa.ArrowInvalid as error:
        raise ValueError(f"{path}: not a Parquet file ({error})") from None
    index = 0
    for batch in rows.iter_batches(batch_size=1024):
        for record in batch.to_pylist():
            yield f"{path}[{index}]", record
            index += 1


def json_array(path: str | os.PathLike, content: bytes) -> list | None:
    """The records of `content` as one JSON array, or None when it is JSON lines instead
    (a first line that is a whole JSON value, and more lines after it)."""
    first, _, rest = content.removeprefix(codecs.BOM_UTF8).lstrip().partition(b"\n")
    if rest.strip():
        try:
            json.loads(first)
            return None
        except (ValueError, RecursionError):
            pass
    try:
        return json.loads(content.decode("utf-8-sig"))
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: invalid UTF-8 at byte {error.start} of a JSON array") from None
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{path}:{error.lineno}:{error.colno}: malformed JSON array ({error.msg})"
        ) from None
    except RecursionError:
        raise ValueError(f"{path}: JSON array nested too deeply") from None


def json_lines(
    path: str | os.PathLike, stream: IO[bytes], data: JsonlExamples
) -> Iterator[tuple[str, object]]:
    """(where, record) for each JSON line of `stream`, skipping into `data` what does not parse."""
    for number, raw in enumerate(stream, start=1):
        where = f"{path}:{number}"
        try:
            line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as error:
            data.skip(where, f"invalid UTF-8 ({error.reason})")
            continue
        if not line.strip():
            continue
        try:
            yield where, json.loads(line)
        except json.JSONDecodeError as error:
            data.skip(where, f"malformed JSON ({error.msg})")
        except RecursionError:
            data.skip(where, "JSON nested too deeply")


def read_jsonl_examples(
    path: str | os.PathLike, parse: Callable[[object], T], what: str
) -> JsonlExamples[T]:
    """Parse each record of `path` (see `file_records`) with `parse` (ValueError: skip it,
    saying why, with file and line); refuse a file in which no record is usable. `what`
    names the examples."""
    data: JsonlExamples[T] = JsonlExamples()
    for where, record in file_records(path, data):
        try:
            data.items.append(parse(record))
        except ValueError as error:
            data.skip(where, str(error))
    if (unshown := sum(data.skipped.values()) - SKIPS_SHOWN) > 0:
        log.warning("%s: %d more records skipped (not logged one by one)", path, unshown)
    if not data.items:
        first = f"; first: {data.skipped_examples[0]}" if data.skipped_examples else ""
        raise ValueError(
            f"{path}: no usable {what}; skipped: {dict(data.skipped) or 'none'}{first}"
        )
    return data


def read_instruction_data(path: str | os.PathLike) -> JsonlExamples[list[dict[str, str]]]:
    """Read instruction records in any format of helox.tune.formats (chat, ShareGPT,
    prompt-completion, Alpaca, Dolly) from any file that `file_records` reads."""
    return read_jsonl_examples(path, parse_example, "instruction examples")


def is_validation(conversation: list[dict[str, str]], seed: int, fraction: float) -> bool:
    """A seeded hash of the conversation decides whether it is held out."""
    text = json.dumps(conversation, sort_keys=True).encode("utf-8", "surrogatepass")
    digest = hashlib.blake2b(text, digest_size=8, key=seed.to_bytes(8, "little")).digest()
    return int.from_bytes(digest, "little") / 2**64 < fraction


def held_out_flags(
    conversations: list[list[dict[str, str]]], seed: int, fraction: float
) -> list[bool]:
    """Which conversations are held out: by `is_validation`, or, when that holds out none or
    all of them (tiny data), every round(1 / fraction)-th one."""
    held_out = [is_validation(c, seed, fraction) for c in conversations]
    if all(held_out) or not any(held_out):
        held_out = [i % max(2, round(1 / fraction)) == 0 for i in range(len(held_out))]
    return held_out


def describe_split(what: str, train: list, held_out: list, skipped: Counter) -> str:
    """A tuning stage's data for its log: "N `what`, M held out, K lines skipped {reason: N}"."""
    return (
        f"{len(train)} {what}, {len(held_out)} held out, "
        f"{sum(skipped.values())} lines skipped {dict(skipped)}"
    )


def cut_to(chat: RenderedChat, seq_len: int) -> RenderedChat:
    """The first seq_len + 1 tokens of `chat` (seq_len inputs, each with its next token)."""
    return RenderedChat(chat.ids[: seq_len + 1], chat.trained[: seq_len + 1])


def warn_cut(cut: int, total: int, seq_len: int, dropped: int) -> None:
    """Say how many rendered sequences were longer than seq_len, and how many were dropped."""
    if cut:
        log.warning(
            "%d of %d conversations are longer than seq_len (%d tokens) and lose their end; "
            "%d of them lost every response token and are left out",
            cut,
            total,
            seq_len,
            dropped,
        )


def render_examples(
    conversation: list[dict], chat: ChatFormat, skipped: Counter | None
) -> list[RenderedChat]:
    """The training examples `chat` makes of one conversation; none, counted in `skipped`
    with the reason, where the template refuses it or its turns cannot be masked exactly."""
    try:
        return chat.examples(conversation)
    except ValueError as error:
        if skipped is not None:
            skipped[str(error)] += 1
        return []


def encode_examples(
    conversations: list[list[dict[str, str]]],
    chat: ChatFormat,
    seq_len: int,
    skipped: Counter | None = None,
) -> list[RenderedChat]:
    """Render conversations in `chat`'s template, cut each example to seq_len + 1 tokens, and
    drop those the cut left with nothing to learn, counting them in `skipped` when given."""
    examples = [e for c in conversations for e in render_examples(c, chat, skipped)]
    rendered, cut = [], 0
    for example in examples:
        cut += len(example.ids) > seq_len + 1
        example = cut_to(example, seq_len)
        if any(example.trained[1:]):
            rendered.append(example)
        elif skipped is not None:
            skipped[f"no response token within seq_len ({seq_len} tokens)"] += 1
    warn_cut(cut, len(examples), seq_len, len(examples) - len(rendered))
    return rendered


def collate(examples: list[RenderedChat], pad_id: int) -> tuple[Tensor, Tensor]:
    """Pad to the batch's longest example; labels are next tokens where trained, else ignored."""
    width = max(len(e.ids) for e in examples) - 1
    inputs = np.full((len(examples), width), pad_id, dtype=np.int64)
    labels = np.full((len(examples), width), IGNORE_INDEX, dtype=np.int64)
    for row, example in enumerate(examples):
        ids = np.asarray(example.ids, dtype=np.int64)
        trained = np.asarray(example.trained[1:], dtype=bool)
        inputs[row, : len(ids) - 1] = ids[:-1]
        labels[row, : len(ids) - 1] = np.where(trained, ids[1:], IGNORE_INDEX)
    return torch.from_numpy(inputs), torch.from_numpy(labels)


def collate_packed(
    rows: list[list[RenderedChat]], width: int, pad_id: int
) -> tuple[Tensor, Tensor, dict]:
    """Lay each row's examples end to end in `width` slots; positions restart per example and
    `segment_ids` number the examples (-1 on padding), so attention stays inside one."""
    inputs = np.full((len(rows), width), pad_id, dtype=np.int64)
    labels = np.full((len(rows), width), IGNORE_INDEX, dtype=np.int64)
    positions = np.zeros((len(rows), width), dtype=np.int64)
    segments = np.full((len(rows), width), -1, dtype=np.int64)
    for row, examples in enumerate(rows):
        offset = 0
        for segment, example in enumerate(examples):
            ids = np.asarray(example.ids, dtype=np.int64)
            trained = np.asarray(example.trained[1:], dtype=bool)
            span = slice(offset, offset + len(ids) - 1)
            inputs[row, span] = ids[:-1]
            labels[row, span] = np.where(trained, ids[1:], IGNORE_INDEX)
            positions[row, span] = np.arange(len(ids) - 1)
            segments[row, span] = segment
            offset += len(ids) - 1
    extra = {
        "position_ids": torch.from_numpy(positions),
        "segment_ids": torch.from_numpy(segments),
    }
    return torch.from_numpy(inputs), torch.from_numpy(labels), extra


def first_fit_rows(lengths: list[int], width: int) -> list[list[int]]:
    """Indices of `lengths` grouped into rows of at most `width`: each goes into the first row
    with room, in the order given, so a shuffled order gives shuffled, nearly full rows."""
    room = np.zeros(len(lengths), dtype=np.int64)
    rows: list[list[int]] = []
    for index, length in enumerate(lengths):
        fits = np.flatnonzero(room[: len(rows)] >= length)
        row = int(fits[0]) if len(fits) else len(rows)
        if row == len(rows):
            rows.append([])
            room[row] = width
        rows[row].append(index)
        room[row] -= length
    return rows


class TuningBatches(ShuffledBatches, ABC, Generic[T, Unit]):
    """Endless batches of tuning items (SFT examples, DPO pairs) in an order fixed by (seed,
    epoch); position restorable. Each epoch orders its units (`order_units`); a global batch
    is the next `world_size` × `batch_size` of them, moving into the next epoch when one runs
    out, and process `rank` takes its own run. With `pack_width` the items' sequences are
    first-fit into rows of that many slots; `pad_id` (the tokenizer's) fills what is left."""

    ITEMS: ClassVar[str]  # what the items are, for the error when there are none
    SEQUENCE: ClassVar[str]  # what one sequence is, for the error when one is too long

    def __init__(
        self,
        items: list[T],
        batch_size: int,
        seed: int,
        pack_width: int | None = None,
        rank: int = 0,
        world_size: int = 1,
        *,
        pad_id: int,
    ):
        if not items:
            raise ValueError(f"no {self.ITEMS} to train on")
        longest = max(self.slots(item) for item in items)
        if pack_width is not None and longest > pack_width:
            raise ValueError(
                f"an {self.SEQUENCE} of {longest} tokens does not fit a row of {pack_width}"
            )
        super().__init__(batch_size, seed, rank, world_size)
        self.items = items
        self.pack_width = pack_width
        self.pad_id = pad_id
        self._units_of: tuple[int, list[Unit]] | None = None

    @abstractmethod
    def slots(self, item: T) -> int:
        """The row slots that the longest sequence of `item` takes."""

    @abstractmethod
    def order_units(self) -> list[Unit]:
        """This epoch's units, in the order batches take them."""

    def epoch_units(self) -> list[Unit]:
        """`order_units` of this epoch, computed once per epoch."""
        if self._units_of is None or self._units_of[0] != self.epoch:
            self._units_of = (self.epoch, self.order_units())
        return self._units_of[1]

    def _next_unit(self) -> Unit:
        if self.index >= len(self.epoch_units()):
            self.epoch, self.index = self.epoch + 1, 0
        unit = self.epoch_units()[self.index]
        self.index += 1
        return unit

    def next_units(self) -> Sequence[Unit]:
        """This process's units of the next global batch."""
        return self.own_share([self._next_unit() for _ in range(self.batch_size * self.world_size)])


class SFTBatches(TuningBatches[RenderedChat, list[int]]):
    """Endless batches of SFT examples. Without `pack_width` a batch is `batch_size` examples
    padded to the longest; with it, each epoch's shuffled examples are first-fit into rows of
    `pack_width` slots, and a batch is `batch_size` such rows."""

    ITEMS = "SFT examples"
    SEQUENCE = "example"

    def slots(self, item: RenderedChat) -> int:
        return len(item.ids) - 1

    def order_units(self) -> list[list[int]]:
        order = self.permutation(len(self.items))
        if self.pack_width is None:
            return [[int(i)] for i in order]
        lengths = [self.slots(self.items[i]) for i in order]
        return [[int(order[i]) for i in row] for row in first_fit_rows(lengths, self.pack_width)]

    def rows(self) -> list[list[int]]:
        """This epoch's rows, as example indices."""
        return self.epoch_units()

    def __next__(self) -> tuple[Tensor, Tensor] | tuple[Tensor, Tensor, dict]:
        rows = [[self.items[i] for i in row] for row in self.next_units()]
        if self.pack_width is None:
            return collate([row[0] for row in rows], self.pad_id)
        return collate_packed(rows, self.pack_width, self.pad_id)


def padding_fraction(batches: SFTBatches) -> float:
    """The share of slots that hold padding in the first epoch of `batches`."""
    used = [sum(batches.slots(batches.items[i]) for i in row) for row in batches.rows()]
    if batches.pack_width is not None:
        slots = len(used) * batches.pack_width
    else:
        groups = [used[i : i + batches.batch_size] for i in range(0, len(used), batches.batch_size)]
        slots = sum(len(group) * max(group) for group in groups)
    return 1 - sum(used) / slots


def eval_batches(examples: list[RenderedChat], batch_size: int, max_batches: int, pad_id: int):
    """The held-out examples in file order, as at most `max_batches` batches."""
    for start in range(0, min(len(examples), batch_size * max_batches), batch_size):
        yield collate(examples[start : start + batch_size], pad_id)
