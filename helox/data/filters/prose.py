"""Web text quality filters: Gopher repetition, Gopher quality, C4 and FineWeb.

Each runs on the kinds its config lists (web text by default); on a hard-wrapped kind
its "lines" are the re-flowed paragraphs (`TextView.lines`).

The thresholds are the published ones (the config's defaults); a value exactly at a
threshold passes. All four read the document's shared `view` (non-empty lines,
whitespace-split words, lowercased text), which is made once per text, so a chain of
them splits a document into words once. Words are whitespace tokens: cheap, and
close to what the papers' tokenizers give for the ratios these rules take.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from functools import cached_property
from itertools import filterfalse
from operator import methodcaller

import numpy as np

from helox.config import C4Config, FineWebConfig, GopherQualityConfig, GopherRepetitionConfig
from helox.data.documents import Document
from helox.data.filters.base import Drop, Step, ratio

ASCII_PUNCTUATION = string.punctuation.encode("ascii")
# Unicode punctuation common in prose: the General Punctuation block (dashes, curly quotes,
# bullets, ellipsis; not its line and paragraph separators) and Latin-1's marks.
UNICODE_PUNCTUATION = re.compile(
    "[\u2010-\u2027\u2030-\u205e\u00a1\u00a7\u00ab\u00b6\u00b7\u00bb\u00bf]+"
)
LETTER = re.compile(r"[^\W\d_]")
BULLET_LINE = re.compile(r"^[ \t]*[-*\u2022\u2023\u25e6\u2043\u2219]", re.MULTILINE)
ENDS_WITH_ELLIPSIS = methodcaller("endswith", ("...", "\u2026"))

C4_END_MARKS = (".", "?", "!", '"', "\u201d")
C4_CITATION = re.compile(r"\[\d*\]|\[edit\]|\[citation needed\]", re.IGNORECASE)
C4_POLICY = re.compile(
    "terms of use|privacy policy|cookie policy|uses cookies|use of cookies|use cookies"
)
SENTENCE_END = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*(?=\s|$)")

FINEWEB_STOP_CHARS = (".", "'", '"', "!", "?")


def duplicates(items: Sequence[str]) -> tuple[int, int]:
    """How many items repeat an earlier one, and how many characters those repeats hold."""
    counts = Counter(items)
    repeats = len(items) - len(counts)
    if not repeats:
        return 0, 0
    return repeats, sum(len(item) * (count - 1) for item, count in counts.items() if count > 1)


def strip_punctuation(text: str) -> str:
    """`text` without punctuation: ASCII marks in one bytes pass, then the Unicode ones if any."""
    stripped = text.encode("utf-8").translate(None, ASCII_PUNCTUATION).decode("utf-8")
    return stripped if stripped.isascii() else UNICODE_PUNCTUATION.sub("", stripped)


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


class GopherRepetitionFilter(Step):
    """Drop prose whose lines, paragraphs or word n-grams repeat too much (Gopher, table A1).

    Repeats are the copies after the first. For n-grams of 5 and more words the paper's
    measure is taken: the characters inside any repeated n-gram, each counted once
    (datatrove instead adds up non-overlapping repeats, which can count fewer).
    """

    name = "gopher_repetition"

    def __init__(self, config: GopherRepetitionConfig):
        self.config = config
        self.kinds = frozenset(config.kinds)
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
        repeats, repeated_chars = duplicates(paragraphs)
        share = ratio(repeats, len(paragraphs))
        if share > config.max_duplicate_paragraph_fraction:
            return self.drop(
                "duplicate_paragraphs",
                f"{share:.3f} of paragraphs repeat > {config.max_duplicate_paragraph_fraction}",
            )
        share = ratio(repeated_chars, size)
        if share > config.max_duplicate_paragraph_char_fraction:
            return self.drop(
                "duplicate_paragraph_chars",
                f"{share:.3f} of characters in repeated paragraphs "
                f"> {config.max_duplicate_paragraph_char_fraction}",
            )
        lines = doc.view.lines
        repeats, repeated_chars = duplicates(lines)
        share = ratio(repeats, len(lines))
        if share > config.max_duplicate_line_fraction:
            return self.drop(
                "duplicate_lines",
                f"{share:.3f} of lines repeat > {config.max_duplicate_line_fraction}",
            )
        share = ratio(repeated_chars, size)
        if share > config.max_duplicate_line_char_fraction:
            return self.drop(
                "duplicate_line_chars",
                f"{share:.3f} of characters in repeated lines "
                f"> {config.max_duplicate_line_char_fraction}",
            )
        return self._check_ngrams(WordNgrams(doc.view.words), size) or doc

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


class GopherQualityFilter(Step):
    """Drop prose with too few or odd words, many symbols or bullets, or no stop words (Gopher).

    A word is a whitespace token with its punctuation removed (a token of punctuation
    alone is none). The stop-word rule counts distinct stop words, as the paper words
    it ("at least two of the following English words"); datatrove counts occurrences.
    """

    name = "gopher_quality"

    def __init__(self, config: GopherQualityConfig):
        self.config = config
        self.kinds = frozenset(config.kinds)
        self.stop_words = frozenset(word.lower() for word in config.stop_words)

    def __call__(self, doc: Document, tally: Counter[str]) -> Document | Drop:
        config = self.config
        # Words with their punctuation removed; tokens of punctuation alone are not words.
        words = strip_punctuation(doc.view.lower).split()
        count = len(words)
        if count < max(config.min_words, 1):
            return self.drop("too_few_words", f"{count} words < {config.min_words}")
        if count > config.max_words:
            return self.drop("too_many_words", f"{count} words > {config.max_words}")
        mean_length = sum(map(len, words)) / count
        if mean_length < config.min_mean_word_length:
            return self.drop(
                "short_words", f"mean word length {mean_length:.2f} < {config.min_mean_word_length}"
            )
        if mean_length > config.max_mean_word_length:
            return self.drop(
                "long_words", f"mean word length {mean_length:.2f} > {config.max_mean_word_length}"
            )
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
        letterless = sum(1 for word in filterfalse(str.isalpha, words) if not LETTER.search(word))
        alphabetic = (count - letterless) / count
        if alphabetic < config.min_alphabetic_word_fraction:
            return self.drop(
                "non_alphabetic_words",
                f"{alphabetic:.3f} of words have a letter < {config.min_alphabetic_word_fraction}",
            )
        found = len(self.stop_words.intersection(words))
        if found < config.min_stop_words:
            return self.drop("stop_words", f"{found} distinct stop words < {config.min_stop_words}")
        return doc


class C4Filter(Step):
    """C4's rules: keep only sentence-like lines; drop pages with code, lorem ipsum, few sentences.

    Follows the paper (Raffel et al. 2020) and its TFDS reference code: a kept line
    ends in terminal punctuation (not an ellipsis) and holds at least five words, none
    over 1000 characters, no "javascript" and no cookie or policy notice; a page with
    "lorem ipsum" or a curly bracket is dropped, as is one left with under three sentences.
    """

    name = "c4"

    def __init__(self, config: C4Config):
        self.config = config
        self.kinds = frozenset(config.kinds)

    def __call__(self, doc: Document, tally: Counter[str]) -> Document | Drop:
        config = self.config
        lowered = doc.view.lower
        if config.drop_lorem_ipsum and "lorem ipsum" in lowered:
            return self.drop("lorem_ipsum", "the page contains 'lorem ipsum'")
        if config.drop_curly_brackets and "{" in doc.text:
            return self.drop("curly_bracket", "the page contains '{'")
        # Whole-page checks first: a rule whose phrase is nowhere on the page skips its lines.
        find_javascript = config.drop_javascript_lines and "javascript" in lowered
        find_policy = config.drop_policy_lines and C4_POLICY.search(lowered) is not None
        find_citations = config.remove_citations and "[" in doc.text
        kept = []
        for raw_line in doc.view.lines:
            line = raw_line.strip()
            if (
                len(line) > config.max_word_length
                and max(map(len, line.split())) > config.max_word_length
            ):
                tally["lines_with_a_long_word"] += 1
                continue
            if find_citations:
                line = C4_CITATION.sub("", line)
            if config.drop_lines_without_terminal_punctuation and (
                not line.endswith(C4_END_MARKS) or line.endswith("...")
            ):
                tally["lines_without_terminal_punctuation"] += 1
                continue
            if len(line.split()) < config.min_words_per_line:
                tally["lines_with_few_words"] += 1
                continue
            if find_javascript and "javascript" in line.lower():
                tally["javascript_lines"] += 1
                continue
            if find_policy and C4_POLICY.search(line.lower()):
                tally["policy_lines"] += 1
                continue
            kept.append(line)
        if not kept:
            return self.drop("no_lines_left", "every line was removed")
        text = "\n".join(kept)
        sentences = len(SENTENCE_END.findall(text))
        if sentences < config.min_sentences:
            return self.drop(
                "too_few_sentences", f"{sentences} sentences left < {config.min_sentences}"
            )
        return doc if text == doc.text else replace(doc, text=text)


class FineWebFilter(Step):
    """FineWeb's line rules: enough lines end in punctuation, few are short or repeated."""

    name = "fineweb"

    def __init__(self, config: FineWebConfig):
        self.config = config
        self.kinds = frozenset(config.kinds)
        self.ends_with_stop = methodcaller("endswith", FINEWEB_STOP_CHARS)
        self.is_short = config.short_line_length.__ge__

    def __call__(self, doc: Document, tally: Counter[str]) -> Document | Drop:
        config = self.config
        lines = doc.view.lines
        punctuated = ratio(sum(map(self.ends_with_stop, lines)), len(lines))
        if punctuated < config.min_terminal_punctuation_line_fraction:
            return self.drop(
                "line_punctuation",
                f"{punctuated:.3f} of lines end in punctuation "
                f"< {config.min_terminal_punctuation_line_fraction}",
            )
        short = ratio(sum(map(self.is_short, map(len, lines))), len(lines))
        if short > config.max_short_line_fraction:
            return self.drop(
                "short_lines",
                f"{short:.3f} of lines have at most {config.short_line_length} characters "
                f"> {config.max_short_line_fraction}",
            )
        newlines = doc.text.count("\n")
        repeated = ratio(duplicates(lines)[1], len(doc.text) - newlines)
        if repeated > config.max_duplicate_line_char_fraction:
            return self.drop(
                "duplicate_line_chars",
                f"{repeated:.3f} of characters in repeated lines "
                f"> {config.max_duplicate_line_char_fraction}",
            )
        per_word = ratio(newlines, len(doc.view.words))
        if per_word > config.max_newlines_per_word:
            return self.drop(
                "newlines_per_word",
                f"{per_word:.3f} newlines per word > {config.max_newlines_per_word}",
            )
        return doc
