"""Gopher's filters (Rae et al. 2021): repetition (lines, paragraphs, word n-grams) and
quality (length, word shape, symbols, bullets, stop words).

Each runs on the kinds its config lists (web text by default); on a hard-wrapped kind its
"lines" are the re-flowed paragraphs (`TextView.lines`). The thresholds are the published
ones (the config's defaults); a value exactly at a threshold passes.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from operator import methodcaller

import numpy as np

from helox.data.documents import Document
from helox.data.filters.base import ConfiguredStep, Drop, ratio
from helox.data.filters.words import STOP_WORDS, WordRules, repeats_drop

BULLET_LINE = re.compile(r"^[ \t]*[-*\u2022\u2023\u25e6\u2043\u2219]", re.MULTILINE)
ENDS_WITH_ELLIPSIS = methodcaller("endswith", ("...", "\u2026"))


def first_occurrences(values: np.ndarray) -> np.ndarray:
    """For each position, the first position holding the same value."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.empty(len(values), dtype=bool)
    starts[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=starts[1:])
    firsts = order[starts][np.cumsum(starts) - 1]
    result = np.empty_like(order)
    result[order] = firsts
    return result


class WordNgrams:
    """The word n-grams of one text as integers: an n-gram's key is where it first occurs.

    Keys for n come from the keys for n - 1, and only where both (n - 1)-grams inside
    an n-gram repeat can the n-gram repeat, so each level sorts just those positions;
    no string is ever joined.
    """

    def __init__(self, words: list[str]):
        self.words = words
        self.size = len(words)
        first_seen: dict[str, int] = {}
        word_keys = map(first_seen.setdefault, words, range(self.size))
        self._keys = {1: np.fromiter(word_keys, dtype=np.int64, count=self.size)}
        self._counts: dict[int, np.ndarray] = {}

    @cached_property
    def lengths(self) -> np.ndarray:
        """Characters in each word."""
        return np.fromiter(map(len, self.words), dtype=np.int64, count=self.size)

    @cached_property
    def offsets(self) -> np.ndarray:
        """Characters (spaces aside) before each word, and in all of them at the end."""
        return np.concatenate(([0], np.cumsum(self.lengths)))

    def keys(self, n: int) -> np.ndarray:
        """For each start position, the first start of the same n-gram (n <= size)."""
        if n not in self._keys:
            shorter = self.keys(n - 1)
            repeated = self.counts(n - 1)[shorter] > 1
            candidates = np.flatnonzero(repeated[:-1] & repeated[1:])
            keys = np.arange(self.size - n + 1)
            if len(candidates):
                pairs = shorter[candidates] * self.size + shorter[candidates + 1]
                keys[candidates] = candidates[first_occurrences(pairs)]
            self._keys[n] = keys
        return self._keys[n]

    def counts(self, n: int) -> np.ndarray:
        """How often each n-gram occurs, indexed by its key."""
        if n not in self._counts:
            self._counts[n] = np.bincount(self.keys(n))
        return self._counts[n]

    def top_chars(self, n: int) -> int:
        """Characters covered by all occurrences of the most frequent n-gram (if it repeats)."""
        if self.size < n:
            return 0
        counts = self.counts(n)
        most = int(counts.max())
        if most < 2:
            return 0
        starts = np.flatnonzero(counts == most)
        chars = self.offsets[starts + n] - self.offsets[starts] + (n - 1)
        return most * int(chars.max())

    def duplicate_chars(self, n: int) -> int:
        """Characters inside n-grams that repeat an earlier one, each character counted once."""
        if self.size < n:
            return 0
        keys = self.keys(n)
        repeats = np.flatnonzero(keys != np.arange(len(keys)))
        if not len(repeats):
            return 0
        edges = np.bincount(repeats, minlength=self.size + 1)
        edges -= np.bincount(repeats + n, minlength=self.size + 1)
        covered = np.cumsum(edges[:-1]) > 0
        spaces = np.count_nonzero(covered[1:] & covered[:-1])
        return int(self.lengths[covered].sum()) + spaces


@dataclass
class GopherRepetitionConfig:
    """Gopher's repetition rules (Rae et al. 2021, table A1): prose that repeats itself."""

    enabled: bool = True
    kinds: list[str] = field(default_factory=lambda: ["web"])
    max_duplicate_line_fraction: float = 0.30  # of lines; a repeat is a copy after the first
    max_duplicate_line_char_fraction: float = 0.20
    max_duplicate_paragraph_fraction: float = 0.30
    max_duplicate_paragraph_char_fraction: float = 0.20
    # [n, limit]: the most frequent word n-gram may cover at most `limit` of the characters.
    max_top_ngram_char_fractions: list[list[float]] = field(
        default_factory=lambda: [[2, 0.20], [3, 0.18], [4, 0.16]]
    )
    # [n, limit]: repeated word n-grams together may cover at most `limit` of the characters.
    max_duplicate_ngram_char_fractions: list[list[float]] = field(
        default_factory=lambda: [[5, 0.15], [6, 0.14], [7, 0.13], [8, 0.12], [9, 0.11], [10, 0.10]]
    )


class GopherRepetitionFilter(ConfiguredStep[GopherRepetitionConfig]):
    """Drop prose whose lines, paragraphs or word n-grams repeat too much (Gopher, table A1).

    Repeats are the copies after the first. For n-grams of 5 and more words the paper's
    measure is taken: the characters inside any repeated n-gram, each counted once
    (datatrove instead adds up non-overlapping repeats, which can count fewer).
    """

    name = "gopher_repetition"

    def __init__(self, config: GopherRepetitionConfig):
        super().__init__(config)
        self.top_ngrams = sorted(
            (int(n), float(limit)) for n, limit in config.max_top_ngram_char_fractions
        )
        self.duplicate_ngrams = sorted(
            (int(n), float(limit)) for n, limit in config.max_duplicate_ngram_char_fractions
        )
        # Repeated (n+1)-grams lie inside repeated n-grams, so the covered fraction only
        # shrinks with n: once it is under every later limit, no larger n can fail.
        limits = [limit for _, limit in self.duplicate_ngrams]
        self.later_minimum = [min(limits[i + 1 :], default=math.inf) for i in range(len(limits))]

    def __call__(self, doc: Document, tally: Counter[str]) -> Document | Drop:
        config = self.config
        size = len(doc.text)
        paragraphs = [part.strip("\n") for part in doc.text.strip().split("\n\n")]
        paragraphs = [part for part in paragraphs if part]
        return (
            repeats_drop(
                self,
                "paragraph",
                paragraphs,
                len(paragraphs),
                size,
                config.max_duplicate_paragraph_fraction,
                config.max_duplicate_paragraph_char_fraction,
            )
            or repeats_drop(
                self,
                "line",
                doc.view.lines,
                len(doc.view.lines),
                size,
                config.max_duplicate_line_fraction,
                config.max_duplicate_line_char_fraction,
            )
            or self._check_ngrams(WordNgrams(doc.view.words), size)
            or doc
        )

    def _check_ngrams(self, ngrams: WordNgrams, size: int) -> Drop | None:
        for n, limit in self.top_ngrams:
            share = ratio(ngrams.top_chars(n), size)
            if share > limit:
                return self.drop(
                    f"top_{n}gram", f"most frequent {n}-gram covers {share:.3f} > {limit}"
                )
        for (n, limit), later_minimum in zip(
            self.duplicate_ngrams, self.later_minimum, strict=True
        ):
            share = ratio(ngrams.duplicate_chars(n), size)
            if share > limit:
                return self.drop(
                    f"duplicate_{n}grams", f"repeated {n}-grams cover {share:.3f} > {limit}"
                )
            if share <= later_minimum:
                break
        return None


@dataclass
class GopherQualityConfig:
    """Gopher's quality rules (Rae et al. 2021): length, word shape, symbols, stop words."""

    enabled: bool = True
    kinds: list[str] = field(default_factory=lambda: ["web"])
    min_words: int = 50
    max_words: int = 100_000  # a longer text is dropped, never cut
    min_mean_word_length: float = 3
    max_mean_word_length: float = 10
    max_symbol_word_ratio: float = 0.1  # '#' per word, and ellipses per word
    max_bullet_line_fraction: float = 0.9
    max_ellipsis_line_fraction: float = 0.3
    min_alphabetic_word_fraction: float = 0.8
    min_stop_words: int = 2  # distinct words of stop_words the text must hold
    stop_words: list[str] = field(default_factory=lambda: list(STOP_WORDS))


class GopherQualityFilter(WordRules):
    """Drop prose with too few or odd words, many symbols or bullets, or no stop words (Gopher).

    A word is a whitespace token with its punctuation removed (a token of punctuation
    alone is none). The stop-word rule counts distinct stop words, as the paper words
    it ("at least two of the following English words"); datatrove counts occurrences.
    """

    name = "gopher_quality"
    config: GopherQualityConfig

    def judge(self, doc: Document, words: list[str]) -> Drop | None:
        if len(words) > self.config.max_words:
            return self.drop("too_many_words", f"{len(words)} words > {self.config.max_words}")
        return (
            self.length_drop(words)
            or self._check_symbols(doc, len(words))
            or self.letters_drop(words)
            or self.stop_words_drop(words)
        )

    def _check_symbols(self, doc: Document, count: int) -> Drop | None:
        config = self.config
        text = doc.text
        hashes = text.count("#") / count
        if hashes > config.max_symbol_word_ratio:
            return self.drop(
                "hashes", f"{hashes:.3f} '#' per word > {config.max_symbol_word_ratio}"
            )
        ellipses = (text.count("...") + text.count("\u2026")) / count
        if ellipses > config.max_symbol_word_ratio:
            return self.drop(
                "ellipses", f"{ellipses:.3f} ellipses per word > {config.max_symbol_word_ratio}"
            )
        lines = doc.view.lines
        bullets = ratio(len(BULLET_LINE.findall(text)), len(lines))
        if bullets > config.max_bullet_line_fraction:
            return self.drop(
                "bullet_lines",
                f"{bullets:.3f} of lines start with a bullet > {config.max_bullet_line_fraction}",
            )
        trailing = ratio(sum(map(ENDS_WITH_ELLIPSIS, lines)), len(lines))
        if trailing > config.max_ellipsis_line_fraction:
            return self.drop(
                "ellipsis_lines",
                f"{trailing:.3f} of lines end with an ellipsis "
                f"> {config.max_ellipsis_line_fraction}",
            )
        return None
