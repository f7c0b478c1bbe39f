"""Bucket jobs: the duplicate pairs of one range of lane keys, read from every part's index.

Bucket job j of J takes the keys in [j·2^64/J, (j+1)·2^64/J) of every lane (the exact lane,
then each LSH band): for each lane it reads that range of every part, a block of about
BLOCK_ENTRIES entries at a time (a sub-range of key values, so equal keys stay together), and
sorts the block. Documents whose keys collide are ordered as the join ranks them (longest,
then smallest text hash, then smallest source hash, then part and line), and each is paired
with the first and the previous document of its bucket, as `bucket_pairs` does. A pair of
the exact lane (equal 128-bit text hashes) is a duplicate as it is; a pair of a band is one
when at least `threshold` of its signatures' values agree, read for the pair alone.

Pairs are written to a zip of numpy arrays a chunk at a time (`pairs-{k}` holds a chunk's
(left, right) global document ids), so a job's memory is one block and one chunk, whatever
the corpus. Global ids number the documents of all parts in part order.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import zipfile
from collections.abc import Iterator

import numpy as np

from helox.common.io import atomic_path, finish_atomic
from helox.data.dedup import DedupConfig
from helox.data.dedup_index import (
    EXACT_LANE,
    KEY_SPACE,
    IndexSettings,
    PartIndex,
    gather,
    open_parts,
    rank_keys,
)
from helox.data.minhash import bucket_pairs

log = logging.getLogger(__name__)

# Lane entries (key, part, document) a bucket job sorts at once: about 60 bytes each with
# the sort's work arrays, so 16 MB a block.
BLOCK_ENTRIES = 1 << 18
# Pairs whose signatures are compared at once (4 MB of signatures at 128 values), and pairs
# written to one chunk.
PAIR_BATCH = 1 << 12
CHUNK_PAIRS = 1 << 16


class PairWriter:
    """Append (left, right) id arrays to a zip of `.npy` chunks, written atomically."""

    def __init__(self, path: str | os.PathLike):
        self._context = atomic_path(path)
        self._zip = zipfile.ZipFile(self._context.__enter__(), "w", allowZip64=True)
        self._pending: list[np.ndarray] = []
        self._chunks = 0
        self.count = 0

    def write(self, left: np.ndarray, right: np.ndarray) -> None:
        if not len(left):
            return
        self._pending.append(np.stack([left, right]).astype("<i8"))
        self.count += len(left)
        if sum(chunk.shape[1] for chunk in self._pending) >= CHUNK_PAIRS:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            with self._zip.open(f"pairs-{self._chunks}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.concatenate(self._pending, axis=1))
            self._pending.clear()
            self._chunks += 1

    def close(self, counts: dict[str, int], success: bool = True) -> None:
        """Write the last chunk and the job's counts, then rename the zip onto its name;
        without `success`, delete it instead."""

        def finish() -> None:
            if success:
                self._flush()
                with self._zip.open("counts.npy", "w") as member:
                    np.lib.format.write_array(member, np.array(list(counts.values())))
            self._zip.close()

        finish_atomic(self._context, finish, success)


COUNT_NAMES = ("exact_pairs", "candidate_pairs", "merged_pairs")


def read_pairs(path: str | os.PathLike) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The (left, right) global ids of each chunk of a bucket job's pairs."""
    with np.load(path, allow_pickle=False) as chunks:
        for name in chunks.files:
            if name.startswith("pairs-"):
                left, right = chunks[name]
                yield left, right


def read_counts(path: str | os.PathLike) -> dict[str, int]:
    """The pairs a bucket job found: exact ones, and near candidates checked and accepted."""
    with np.load(path, allow_pickle=False) as chunks:
        return dict(zip(COUNT_NAMES, map(int, chunks["counts"]), strict=True))


def key_range(job: int, jobs: int) -> tuple[int, int]:
    """The lane keys bucket job `job` of `jobs` takes: [low, high)."""
    return job * KEY_SPACE // jobs, (job + 1) * KEY_SPACE // jobs


def find_pairs(
    index_folders: list[str | os.PathLike],
    job: int,
    jobs: int,
    output: str | os.PathLike,
    config: DedupConfig,
) -> dict[str, int]:
    """Write the duplicate pairs of bucket job `job` of `jobs` (see the module); return counts."""
    if not 0 <= job < jobs:
        raise ValueError(f"bucket job {job} is out of range for {jobs} (dedup.bucket_jobs)")
    parts, offsets = open_parts(index_folders)
    _check_settings(parts, config)
    near = config.near
    lanes = [EXACT_LANE] if config.exact else []
    lanes += list(range(near.bands)) if near.enabled else []
    counts = dict.fromkeys(COUNT_NAMES, 0)
    needed = near.threshold * near.num_perm
    writer = PairWriter(output)
    try:
        for lane in lanes:
            for part_of, docs, keys in _blocks(parts, lane, key_range(job, jobs)):
                left, right = _colliding_pairs(parts, part_of, docs, keys, lane)
                if lane == EXACT_LANE:
                    counts["exact_pairs"] += len(left)
                else:
                    counts["candidate_pairs"] += len(left)
                    left, right = _similar(parts, part_of, docs, left, right, needed)
                    counts["merged_pairs"] += len(left)
                writer.write(
                    offsets[part_of[left]] + docs[left], offsets[part_of[right]] + docs[right]
                )
    except BaseException:
        writer.close(counts, success=False)
        raise
    writer.close(counts)
    log.info(
        "bucket job %d of %d, %d parts, %d lanes: %d exact pairs, %d of %d near candidates "
        "similar enough",
        job,
        jobs,
        len(parts),
        len(lanes),
        counts["exact_pairs"],
        counts["merged_pairs"],
        counts["candidate_pairs"],
    )
    return counts


def _check_settings(parts: list[PartIndex], config: DedupConfig) -> None:
    """Refuse indexes signed with other settings than `config`'s, naming the keys."""
    expected = dataclasses.asdict(IndexSettings.of(config))
    for part in parts:
        differing = [key for key, value in expected.items() if part.meta.get(key) != value]
        if differing:
            found = ", ".join(f"{key} {part.meta.get(key)}" for key in differing)
            wanted = ", ".join(f"{key} {expected[key]}" for key in differing)
            raise ValueError(
                f"the dedup index {part.folder} was signed with {found}, but the dedup section "
                f"asks for {wanted}: rerun the dedup_signatures rule"
            )


def _blocks(
    parts: list[PartIndex], lane: int, key_bounds: tuple[int, int]
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The entries of `lane` within `key_bounds` from every part, a sub-range of keys at a
    time: (part, document, key) arrays of about BLOCK_ENTRIES entries."""
    low, high = key_bounds
    ends = np.array([part.positions(lane, [low, high]) for part in parts])
    blocks = max(1, math.ceil(int((ends[:, 1] - ends[:, 0]).sum()) / BLOCK_ENTRIES))
    bounds = [low + (high - low) * block // blocks for block in range(blocks + 1)]
    positions = [part.positions(lane, bounds) for part in parts]
    for block in range(blocks):
        pieces = [
            (number, *part.lane_slice(lane, where[block], where[block + 1]))
            for number, (part, where) in enumerate(zip(parts, positions, strict=True))
            if where[block + 1] > where[block]
        ]
        if pieces:
            yield (
                np.concatenate([np.full(len(docs), n, dtype=np.int64) for n, _, docs in pieces]),
                np.concatenate([docs for _, _, docs in pieces]),
                np.concatenate([keys for _, keys, _ in pieces]),
            )


def _colliding_pairs(
    parts: list[PartIndex], part_of: np.ndarray, docs: np.ndarray, keys: np.ndarray, lane: int
) -> tuple[np.ndarray, np.ndarray]:
    """Positions (left, right) in the block of the pairs among entries of equal keys: each
    linked to the first and the previous of its bucket in rank order."""
    order = np.argsort(keys, kind="stable")
    same = keys[order[1:]] == keys[order[:-1]]
    colliding = np.zeros(len(keys), dtype=bool)
    colliding[order[1:][same]] = colliding[order[:-1][same]] = True
    members = np.flatnonzero(colliding)
    if not len(members):
        return members, members
    records = gather(parts, part_of[members], docs[members], "records")
    exact = records["exact"]
    # The exact lane's buckets are equal 128-bit text hashes; a band's, equal band keys.
    buckets = (exact[:, 1], exact[:, 0]) if lane == EXACT_LANE else (keys[members],)
    ranked = np.lexsort(rank_keys(records, part_of[members], docs[members]) + buckets)
    bucket_columns = np.stack([column[ranked] for column in buckets])
    starts = np.any(bucket_columns[:, 1:] != bucket_columns[:, :-1], axis=0)
    labels = np.concatenate([[0], np.cumsum(starts)]).astype(np.uint64)
    left, right = bucket_pairs(labels)
    return members[ranked[left]], members[ranked[right]]


def _similar(
    parts: list[PartIndex],
    part_of: np.ndarray,
    docs: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    needed: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The pairs whose signatures agree on at least `needed` values."""
    accepted = np.zeros(len(left), dtype=bool)
    for start in range(0, len(left), PAIR_BATCH):
        chunk = slice(start, start + PAIR_BATCH)
        ends = np.concatenate([left[chunk], right[chunk]])
        signatures = gather(parts, part_of[ends], docs[ends], "signatures")
        half = len(ends) // 2
        agree = np.count_nonzero(signatures[:half] == signatures[half:], axis=1)
        accepted[chunk] = agree >= needed
    return left[accepted], right[accepted]
