"""The filter for hard-wrapped text (books, long-form prose, documentation): whole paragraphs.

Gopher's word rules (length, word shape, stop words) and its paragraph repetition rules,
judged on paragraphs re-flowed into single lines, so a line break inside a sentence
changes nothing. Nothing is cut out of a document: it is kept whole or dropped with its
reason. There is no upper word limit (a novel holds far more than a web page), the
alphabetic share allows the code samples of documentation, and short paragraphs (headings,
a play's speaker names) never count as repeats.
"""

from __future__ import annotations

from collections import Counter

from helox.config import ParagraphQualityConfig
from helox.data.documents import Document
from helox.data.filters.base import Drop, Step, ratio
from helox.data.filters.prose import LETTER, duplicates, strip_punctuation


class ParagraphQualityFilter(Step):
    name = "paragraph_quality"

    def __init__(self, config: ParagraphQualityConfig):
        self.config = config
        self.kinds = frozenset(config.kinds)
        self.stop_words = frozenset(word.lower() for word in config.stop_words)

    def __call__(self, doc: Document, tally: Counter[str]) -> Document | Drop:
        return self._check_words(doc) or self._check_repeats(doc) or doc

    def _check_words(self, doc: Document) -> Drop | None:
        config = self.config
        words = strip_punctuation(doc.view.lower).split()
        count = len(words)
        if count < max(config.min_words, 1):
            return self.drop("too_few_words", f"{count} words < {config.min_words}")
        mean_length = sum(map(len, words)) / count
        if mean_length < config.min_mean_word_length:
            return self.drop(
                "short_words", f"mean word length {mean_length:.2f} < {config.min_mean_word_length}"
            )
        if mean_length > config.max_mean_word_length:
            return self.drop(
                "long_words", f"mean word length {mean_length:.2f} > {config.max_mean_word_length}"
            )
        alphabetic = sum(1 for word in words if LETTER.search(word)) / count
        if alphabetic < config.min_alphabetic_word_fraction:
            return self.drop(
                "non_alphabetic_words",
                f"{alphabetic:.3f} of words have a letter < {config.min_alphabetic_word_fraction}",
            )
        found = len(self.stop_words.intersection(words))
        if found < config.min_stop_words:
            return self.drop("stop_words", f"{found} distinct stop words < {config.min_stop_words}")
        return None

    def _check_repeats(self, doc: Document) -> Drop | None:
        config = self.config
        paragraphs = doc.view.lines  # re-flowed for the hard-wrapped kinds
        judged = [p for p in paragraphs if len(p) > config.min_repeated_paragraph_chars]
        repeats, repeated_chars = duplicates(judged)
        share = ratio(repeats, len(paragraphs))
        if share > config.max_duplicate_paragraph_fraction:
            return self.drop(
                "duplicate_paragraphs",
                f"{share:.3f} of paragraphs repeat > {config.max_duplicate_paragraph_fraction}",
            )
        share = ratio(repeated_chars, len(doc.text))
        if share > config.max_duplicate_paragraph_char_fraction:
            return self.drop(
                "duplicate_paragraph_chars",
                f"{share:.3f} of characters in repeated paragraphs "
                f"> {config.max_duplicate_paragraph_char_fraction}",
            )
        return None
