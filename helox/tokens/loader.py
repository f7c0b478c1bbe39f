"""Memory-mapped token shards → packed (input_ids, labels) batches, with exact resume.

A split is the concatenation of its documents (each ending in eos) in manifest order; the
train split of one source (`corpus.sources`) that of its own files. Window i covers tokens
[i*seq_len, (i+1)*seq_len + 1): inputs are its first seq_len tokens, labels its last seq_len.
Training visits windows in a permutation fixed by (seed, epoch) (`WindowOrder`); evaluation
visits them in order. Several sources are mixed by weight in `helox.tokens.mixture`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Self, TypeVar

import numpy as np
import pyarrow as pa
import torch
from torch import Tensor

from helox.common.io import read_json

TOKENS_COLUMN = "tokens"
BINCOUNT_CHUNK = 1 << 24
Item = TypeVar("Item")


def split_files(manifest: dict, manifest_path: Path, split: str, source: str | None) -> list[str]:
    """The shard files of `split` (of one source's train documents when `source` is given)."""
    splits = manifest.get("splits", {})
    if split not in splits:
        raise ValueError(f"{manifest_path}: no split {split!r} (has {sorted(splits)})")
    if source is None:
        return splits[split]["files"]
    sources = manifest.get("sources", {})
    if split != "train" or source not in sources:
        raise ValueError(
            f"{manifest_path}: no {split} shards of source {source!r} (sources have their own "
            f"train shards only; the sources are {sorted(sources)})"
        )
    return sources[source]["train_files"]


def inputs_and_labels(windows: np.ndarray) -> tuple[Tensor, Tensor]:
    """Rows of seq_len + 1 tokens as (inputs: their first seq_len, labels: their last seq_len)."""
    rows = torch.from_numpy(windows)
    return rows[:, :-1], rows[:, 1:]


class TokenStream:
    """All tokens of one split (or of one source's train documents) as zero-copy NumPy views of
    the memory-mapped Arrow files."""

    def __init__(self, manifest_path: str | os.PathLike, split: str, source: str | None = None):
        self.manifest_path = Path(manifest_path)
        self.split = split
        self.label = f"split {split!r}" + (f" of source {source!r}" if source else "")
        manifest = read_json(self.manifest_path)
        files = split_files(manifest, self.manifest_path, split, source)
        self.vocab_size: int = manifest["vocab_size"]
        self._tables = []
        self.pieces: list[np.ndarray] = []
        for name in files:
            table = pa.ipc.open_file(
                pa.memory_map(str(self.manifest_path.parent / name))
            ).read_all()
            self._tables.append(table)
            for chunk in table.column(TOKENS_COLUMN).chunks:
                offsets = chunk.offsets
                start, end = offsets[0].as_py(), offsets[-1].as_py()
                if end > start:
                    values = chunk.values.slice(start, end - start)
                    self.pieces.append(values.to_numpy(zero_copy_only=True))
        sizes = [len(p) for p in self.pieces]
        self.starts = np.concatenate(([0], np.cumsum(sizes, dtype=np.int64)))
        self.num_tokens = int(self.starts[-1])

    def read(self, start: int, out: np.ndarray) -> None:
        """Fill `out` with the tokens at [start, start + len(out)), across pieces as needed."""
        piece = int(np.searchsorted(self.starts, start, side="right")) - 1
        filled = 0
        while filled < len(out):
            offset = start + filled - int(self.starts[piece])
            part = self.pieces[piece][offset : offset + len(out) - filled]
            out[filled : filled + len(part)] = part
            filled += len(part)
            piece += 1

    def num_windows(self, seq_len: int) -> int:
        """Windows of seq_len + 1 tokens starting every seq_len tokens; error if none fit."""
        count = (self.num_tokens - 1) // seq_len
        if count < 1:
            raise ValueError(
                f"{self.label} of {self.manifest_path} has {self.num_tokens} tokens, "
                f"fewer than one window of seq_len + 1 = {seq_len + 1}"
            )
        return count

    def batch(self, window_ids: np.ndarray, seq_len: int) -> tuple[Tensor, Tensor]:
        rows = np.empty((len(window_ids), seq_len + 1), dtype=np.int64)
        for row, window in zip(rows, window_ids, strict=True):
            self.read(int(window) * seq_len, row)
        return inputs_and_labels(rows)

    def bincount(self, minlength: int) -> np.ndarray:
        """Occurrences of each token id, read in bounded chunks."""
        counts = np.zeros(minlength, dtype=np.int64)
        for piece in self.pieces:
            for start in range(0, len(piece), BINCOUNT_CHUNK):
                chunk = np.bincount(piece[start : start + BINCOUNT_CHUNK], minlength=minlength)
                if len(chunk) > minlength:
                    raise ValueError(
                        f"{self.label} of {self.manifest_path} holds token id "
                        f"{len(chunk) - 1} >= vocab_size {minlength}"
                    )
                counts += chunk
        return counts


class ProcessShare:
    """Endless batches of which, under torchrun, every process draws the same global batch of
    `world_size` × `batch_size` items and keeps its own run of them (`own_share`)."""

    def __init__(self, batch_size: int, rank: int = 0, world_size: int = 1):
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size

    def own_share(self, global_batch: Sequence[Item]) -> Sequence[Item]:
        """This process's `batch_size` items of a global batch."""
        return global_batch[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]

    def __iter__(self) -> Self:
        return self


class ShuffledBatches(ProcessShare):
    """The position of endless batches that visit their items in an order fixed by (seed,
    epoch): `epoch`, and `index` into that epoch's order, which `state()`/`load_state()` save
    and restore. Every process walks the same order and keeps the same position."""

    def __init__(self, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        super().__init__(batch_size, rank, world_size)
        self.seed = seed
        self.epoch = 0
        self.index = 0

    def permutation(self, count: int) -> np.ndarray:
        """This epoch's order of `count` items."""
        return np.random.default_rng([self.seed, self.epoch]).permutation(count)

    def state(self) -> dict:
        return {"epoch": self.epoch, "index": self.index}

    def load_state(self, state: dict) -> None:
        self.epoch, self.index = int(state["epoch"]), int(state["index"])


class WindowOrder:
    """Endless draws of `count` windows: draw k is window k % count of epoch k // count's
    order, a permutation fixed by (seed, epoch, *key)."""

    def __init__(self, count: int, seed: int, key: Sequence[int] = ()):
        self.count = count
        self.seed = seed
        self.key = tuple(key)
        self._epoch = -1
        self._order = np.empty(0, dtype=np.int64)

    def order(self, epoch: int) -> np.ndarray:
        """Epoch `epoch`'s order of the windows (the last one asked for is kept)."""
        if epoch != self._epoch:
            rng = np.random.default_rng([self.seed, epoch, *self.key])
            self._epoch, self._order = epoch, rng.permutation(self.count)
        return self._order

    def take(self, start: int, count: int) -> np.ndarray:
        """The window ids of draws [start, start + count), across epochs as needed."""
        taken = [np.empty(0, dtype=np.int64)]
        while count:
            epoch, index = divmod(start, self.count)
            part = self.order(epoch)[index : index + count]
            taken.append(part)
            start += len(part)
            count -= len(part)
        return np.concatenate(taken)


class PackedBatches(ShuffledBatches):
    """Endless shuffled training batches of token windows over epochs; `state()`/`load_state()`
    resume exactly."""

    def __init__(
        self,
        stream: TokenStream,
        seq_len: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ):
        super().__init__(batch_size, seed, rank, world_size)
        self.stream = stream
        self.seq_len = seq_len
        self.num_windows = stream.num_windows(seq_len)
        self.windows = WindowOrder(self.num_windows, seed)

    def _take(self, count: int) -> np.ndarray:
        """The next `count` window ids; an epoch read to its end stays the position's epoch
        (index = num_windows) until the next take moves into the next one."""
        start = self.epoch * self.num_windows + self.index
        taken = self.windows.take(start, count)
        self.epoch, index = divmod(start + count - 1, self.num_windows)
        self.index = index + 1
        return taken

    def __next__(self) -> tuple[Tensor, Tensor]:
        global_batch = self._take(self.batch_size * self.world_size)
        return self.stream.batch(self.own_share(global_batch), self.seq_len)


def eval_batches(
    stream: TokenStream, seq_len: int, batch_size: int
) -> Iterator[tuple[Tensor, Tensor]]:
    """Every window of `stream` in order, `batch_size` at a time (the last batch may be short)."""
    window_ids = np.arange(stream.num_windows(seq_len))
    for start in range(0, len(window_ids), batch_size):
        yield stream.batch(window_ids[start : start + batch_size], seq_len)


def unigram_baseline(
    manifest_path: str | os.PathLike, train_split: str = "train", eval_split: str = "val"
) -> float:
    """Cross-entropy (nats/token) of `eval_split` under add-one-smoothed train unigram counts."""
    train = TokenStream(manifest_path, train_split)
    evaluated = TokenStream(manifest_path, eval_split)
    if evaluated.num_tokens == 0:
        raise ValueError(f"split {eval_split!r} of {manifest_path} is empty")
    counts = train.bincount(train.vocab_size)
    log_probs = np.log(counts + 1.0) - np.log(counts.sum() + train.vocab_size)
    eval_counts = evaluated.bincount(train.vocab_size)
    return float(-(eval_counts * log_probs).sum() / eval_counts.sum())
