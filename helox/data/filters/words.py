"""What the prose filters measure alike: repeated lines or paragraphs, words without
punctuation, and Gopher's word rules (enough words, their mean length, words with a letter,
stop words), each a drop under its own reason. Words are whitespace tokens: cheap, and
close to what the papers' tokenizers give for the ratios these rules take."""

from __future__ import annotations

import re
import string
from abc import abstractmethod
from collections import Counter
from collections.abc import Sequence
from itertools import filterfalse
from typing import Protocol

from helox.data.documents import Document
from helox.data.filters.base import ConfiguredStep, Drop, Step, ratio

ASCII_PUNCTUATION = string.punctuation.encode("ascii")
# Unicode punctuation common in prose: the General Punctuation block (dashes, curly quotes,
# bullets, ellipsis; not its line and paragraph separators) and Latin-1's marks.
UNICODE_PUNCTUATION = re.compile(
    "[\u2010-\u2027\u2030-\u205e\u00a1\u00a7\u00ab\u00b6\u00b7\u00bb\u00bf]+"
)
LETTER = re.compile(r"[^\W\d_]")
# Gopher's stop words; a text must hold some of them (Rae et al. 2021).
STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")


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


def repeats_drop(
    step: Step,
    unit: str,
    items: Sequence[str],
    count: int,
    size: int,
    max_share: float,
    max_char_share: float,
) -> Drop | None:
    """`step`'s drop of a text whose `unit`s (lines, paragraphs) repeat too much: the repeats
    among `items` are over `max_share` of its `count` units, or hold over `max_char_share` of
    its `size` characters."""
    repeats, repeated_chars = duplicates(items)
    share = ratio(repeats, count)
    if share > max_share:
        return step.drop(f"duplicate_{unit}s", f"{share:.3f} of {unit}s repeat > {max_share}")
    share = ratio(repeated_chars, size)
    if share > max_char_share:
        return step.drop(
            f"duplicate_{unit}_chars",
            f"{share:.3f} of characters in repeated {unit}s > {max_char_share}",
        )
    return None


class WordRulesConfig(Protocol):
    """The settings of Gopher's word rules, shared by the filters that apply them."""

    kinds: list[str]
    min_words: int
    min_mean_word_length: float
    max_mean_word_length: float
    min_alphabetic_word_fraction: float
    min_stop_words: int
    stop_words: list[str]


class WordRules(ConfiguredStep[WordRulesConfig]):
    """A step that judges a text by Gopher's word rules; a word is a whitespace token with
    its punctuation removed (a token of punctuation alone is none)."""

    def __init__(self, config: WordRulesConfig):
        super().__init__(config)
        self.stop_words = frozenset(word.lower() for word in config.stop_words)

    def __call__(self, doc: Document, tally: Counter[str]) -> Document | Drop:
        """Drop `doc` when it has fewer words than `min_words`, else as `judge` finds."""
        words = strip_punctuation(doc.view.lower).split()
        if len(words) < max(self.config.min_words, 1):
            return self.drop("too_few_words", f"{len(words)} words < {self.config.min_words}")
        return self.judge(doc, words) or doc

    @abstractmethod
    def judge(self, doc: Document, words: list[str]) -> Drop | None:
        """The drop of `doc`, whose lowercased `words` are enough, by the first rule it fails."""

    def length_drop(self, words: list[str]) -> Drop | None:
        """A drop when the mean word length is out of its bounds."""
        shortest, longest = self.config.min_mean_word_length, self.config.max_mean_word_length
        mean_length = sum(map(len, words)) / len(words)
        if mean_length < shortest:
            return self.drop("short_words", f"mean word length {mean_length:.2f} < {shortest}")
        if mean_length > longest:
            return self.drop("long_words", f"mean word length {mean_length:.2f} > {longest}")
        return None

    def letters_drop(self, words: list[str]) -> Drop | None:
        """A drop when too few words hold a letter."""
        minimum = self.config.min_alphabetic_word_fraction
        letterless = sum(1 for word in filterfalse(str.isalpha, words) if not LETTER.search(word))
        share = (len(words) - letterless) / len(words)
        if share < minimum:
            return self.drop(
                "non_alphabetic_words", f"{share:.3f} of words have a letter < {minimum}"
            )
        return None

    def stop_words_drop(self, words: list[str]) -> Drop | None:
        """A drop when the text holds fewer distinct stop words than `min_stop_words`."""
        found = len(self.stop_words.intersection(words))
        if found < self.config.min_stop_words:
            return self.drop(
                "stop_words", f"{found} distinct stop words < {self.config.min_stop_words}"
            )
        return None
