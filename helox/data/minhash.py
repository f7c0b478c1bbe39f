"""MinHash signatures of word n-gram shingles, computed with numpy over batches of documents.

A text is casefolded (when asked) and split into words: runs of ASCII letters, digits and
underscores, or of non-ASCII characters. Its shingles are every run of `ngram` consecutive
words, or all of its words as one shingle when it has fewer. Each shingle is hashed once to
64 bits, with no Python loop over words: a polynomial hash of each word's bytes, then a
polynomial of the word hashes in each window, each finished by the MurmurHash3 mixer.

Permutation i maps a shingle hash x to a_i·x + b_i mod 2^64 with a_i odd (a bijection, the
"affine64" scheme of datasketch 2), a_i and b_i drawn from the seed. A signature keeps, per
permutation, the top 32 bits of the smallest value over the document's shingles; the share of
equal positions in two signatures estimates the Jaccard similarity of their shingle sets.

Universal hashing mod the prime 2^61 − 1 is not used: numpy has no 128-bit product, and with
a·x < 2^64 the map wraps at most 8 times, so its orderings are nearly the order of x and the
permutations are far from independent (Jaccard estimates off by 0.3, see benchmarks/RESULTS.md).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

# The words the byte-level tokenizer finds, as a regular expression: the readable reference.
WORD = re.compile(r"[0-9A-Za-z_\u0080-\U0010ffff]+")
# Odd 64-bit multipliers of the word and window polynomials (fixed: they define the shingle hash).
BYTE_BASE = 0x9E3779B97F4A7C15
WORD_BASE = 0xC2B2AE3D27D4EB4F
# Shingles per (permutations × shingles) block computed at once: 128 × 512 × 8 B = 512 KiB.
BLOCK_COLUMNS = 512


def _word_byte_table() -> np.ndarray:
    table = np.zeros(256, dtype=bool)
    for low, high in ((ord("0"), ord("9")), (ord("A"), ord("Z")), (ord("a"), ord("z"))):
        table[low : high + 1] = True
    table[ord("_")] = True
    table[0x80:] = True
    return table


WORD_BYTES = _word_byte_table()


def fmix64(values: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser, element-wise (uint64 arithmetic wraps mod 2^64)."""
    values = values ^ (values >> 33)
    values *= 0xFF51AFD7ED558CCD
    values ^= values >> 33
    values *= 0xC4CEB9FE1A85EC53
    values ^= values >> 33
    return values


def _powers(base: int, count: int) -> np.ndarray:
    """base^0 … base^(count−1) mod 2^64."""
    powers = np.full(count, base, dtype=np.uint64)
    powers[0] = 1
    return np.multiply.accumulate(powers)


def shingle_texts(text: str, ngram: int, lowercase: bool) -> list[str]:
    """The shingles of `text` as space-joined words: what `MinHasher` hashes, written plainly."""
    words = WORD.findall(text.casefold() if lowercase else text)
    if len(words) < ngram:
        return [" ".join(words)] if words else []
    return [" ".join(words[i : i + ngram]) for i in range(len(words) - ngram + 1)]


@dataclass(frozen=True)
class MinHasher:
    """Word n-gram MinHash; `num_perm` 0 computes no signature (near-dedup switched off)."""

    num_perm: int = 128
    ngram: int = 5
    seed: int = 1
    lowercase: bool = True

    def __post_init__(self) -> None:
        if self.num_perm < 0 or self.ngram < 1:
            raise ValueError(f"need num_perm ≥ 0 and ngram ≥ 1, got {self.num_perm}, {self.ngram}")

    @cached_property
    def permutations(self) -> tuple[np.ndarray, np.ndarray]:
        """The (a, b) of each permutation, 64-bit, a odd, from the seed."""
        rng = np.random.default_rng(self.seed)
        a = rng.integers(0, 1 << 63, size=self.num_perm, dtype=np.uint64) * np.uint64(2) + 1
        b = rng.integers(0, 1 << 64, size=self.num_perm, dtype=np.uint64)
        return a, b

    def shingle_hashes(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """The 64-bit hash of every shingle of every text, in order, and each text's count."""
        encoded = [(text.casefold() if self.lowercase else text).encode("utf-8") for text in texts]
        lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        data = np.frombuffer(b"\n".join(encoded), dtype=np.uint8)
        word_hashes, word_starts = _word_hashes(data)
        text_starts = np.cumsum(lengths + 1) - lengths - 1
        text_of_word = np.searchsorted(text_starts, word_starts, side="right") - 1
        word_counts = np.bincount(text_of_word, minlength=len(texts))
        return _window_hashes(word_hashes, word_counts, self.ngram)

    def signatures(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """A (len(texts), num_perm) uint32 signature per text, and its number of shingles.

        A text without words has no shingles; its signature is all 0xFFFFFFFF and means nothing.
        """
        if not self.num_perm:
            return np.empty((len(texts), 0), dtype=np.uint32), np.zeros(len(texts), dtype=np.int64)
        shingles, counts = self.shingle_hashes(texts)
        a, b = self.permutations
        return _min_hashes(shingles, counts, a, b), counts


def _word_hashes(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hash every word of the UTF-8 bytes `data`; return the hashes and each word's first byte."""
    is_word = WORD_BYTES[data]
    edges = np.diff(is_word.view(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts = np.flatnonzero(edges == 1)
    lengths = np.flatnonzero(edges == -1) - starts
    if not len(starts):
        return np.empty(0, dtype=np.uint64), starts
    firsts = np.cumsum(lengths) - lengths
    word_bytes = data[is_word].astype(np.uint64) + np.uint64(1)
    positions = np.arange(len(word_bytes)) - np.repeat(firsts, lengths)
    word_bytes *= _powers(BYTE_BASE, int(lengths.max()))[positions]
    return fmix64(np.add.reduceat(word_bytes, firsts)), starts


def _window_hashes(
    word_hashes: np.ndarray, word_counts: np.ndarray, ngram: int
) -> tuple[np.ndarray, np.ndarray]:
    """Hash each run of `ngram` words of a text (all of them when fewer) into one value."""
    shingle_counts = np.where(word_counts >= ngram, word_counts - ngram + 1, word_counts > 0)
    total = int(shingle_counts.sum())
    text_first_word = np.repeat(np.cumsum(word_counts) - word_counts, shingle_counts)
    text_first_shingle = np.repeat(np.cumsum(shingle_counts) - shingle_counts, shingle_counts)
    starts = text_first_word + np.arange(total) - text_first_shingle
    widths = np.repeat(np.minimum(word_counts, ngram), shingle_counts)
    padded = np.concatenate([word_hashes, np.zeros(ngram, dtype=np.uint64)])
    hashes = np.zeros(total, dtype=np.uint64)
    for offset, weight in enumerate(_powers(WORD_BASE, ngram)):
        terms = padded[starts + offset] * weight
        hashes += np.where(offset < widths, terms, np.uint64(0))
    return fmix64(hashes), shingle_counts


def _min_hashes(x: np.ndarray, counts: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per text, the top 32 bits of the minimum over its shingles of a·x + b mod 2^64."""
    values = np.full((len(counts), len(a)), np.iinfo(np.uint64).max, dtype=np.uint64)
    texts = np.flatnonzero(counts)
    starts = (np.cumsum(counts) - counts)[texts]
    block = np.empty((len(a), BLOCK_COLUMNS), dtype=np.uint64)
    a, b = a[:, None], b[:, None]
    for low in range(0, len(x), BLOCK_COLUMNS):
        columns = x[low : low + BLOCK_COLUMNS]
        permuted = block[:, : len(columns)]
        np.multiply(a, columns, out=permuted)
        permuted += b
        first = np.searchsorted(starts, low, side="right") - 1
        last = np.searchsorted(starts, low + len(columns), side="left")
        segments = np.maximum(starts[first:last] - low, 0)
        owners = texts[first:last]
        segment_mins = np.minimum.reduceat(permuted, segments, axis=1).T
        values[owners] = np.minimum(values[owners], segment_mins)
    return (values >> 32).astype(np.uint32)


def band_keys(band: np.ndarray) -> np.ndarray:
    """A 64-bit key per row of a (documents × rows) band of signatures; equal rows, equal keys."""
    keys = np.zeros(len(band), dtype=np.uint64)
    for column, weight in zip(band.T, _powers(WORD_BASE, band.shape[1]), strict=True):
        keys += column.astype(np.uint64) * weight
    return fmix64(keys)


def bucket_pairs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs (i, j), i > j, among positions with equal keys.

    Each position is paired with the first position of its bucket and with the one before
    it in the bucket: 2 pairs per member at most, however large the bucket.
    """
    order = np.argsort(keys, kind="stable")
    same = keys[order[1:]] == keys[order[:-1]]
    starts = np.flatnonzero(np.concatenate([[True], ~same]))
    first = np.repeat(starts, np.diff(np.append(starts, len(keys))))
    members = np.flatnonzero(np.concatenate([[False], same]))
    left = np.concatenate([order[members], order[members]])
    right = np.concatenate([order[members - 1], order[first[members]]])
    return left, right


@dataclass
class UnionFind:
    """Disjoint sets of 0 … n−1, merged a batch of pairs at a time; a set's root is its minimum."""

    parent: np.ndarray

    @classmethod
    def of_size(cls, size: int) -> UnionFind:
        return cls(np.arange(size))

    def roots(self) -> np.ndarray:
        """Every element's root (compressing every path on the way)."""
        while not np.array_equal(grand := self.parent[self.parent], self.parent):
            self.parent = grand
        return self.parent

    def union(self, left: np.ndarray, right: np.ndarray) -> None:
        """Merge the sets of left[i] and right[i] for each i, hooking larger roots on smaller."""
        while len(left):
            roots = self.roots()
            left, right = roots[left], roots[right]
            apart = left != right
            left, right = left[apart], right[apart]
            np.minimum.at(self.parent, np.maximum(left, right), np.minimum(left, right))


def lsh_shape_error(bands: int, rows: int, num_perm: int) -> str | None:
    """Why the LSH bands do not tile the signature, or None when they do."""
    if bands * rows == num_perm:
        return None
    return (
        f"config keys dedup.near.bands × dedup.near.rows = {bands} × {rows} = {bands * rows}, "
        f"must equal dedup.near.num_perm = {num_perm}"
    )
