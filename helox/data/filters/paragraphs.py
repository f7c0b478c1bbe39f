"""The filter for hard-wrapped text (books, long-form prose, documentation): whole paragraphs.

Gopher's word rules (length, word shape, stop words) and its paragraph repetition rules,
judged on paragraphs re-flowed into single lines, so a line break inside a sentence
changes nothing. Nothing is cut out of a document: it is kept whole or dropped with its
reason. There is no upper word limit (a novel holds far more than a web page), the
alphabetic share allows the code samples of documentation, and short paragraphs (headings,
a play's speaker names) never count as repeats.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from helox.data.documents import Document
from helox.data.filters.base import Drop
from helox.data.filters.words import STOP_WORDS, WordRules, repeats_drop


@dataclass
class ParagraphQualityConfig:
    """Hard-wrapped text (books, documentation) judged on re-flowed paragraphs, never on lines."""

    enabled: bool = True
    kinds: list[str] = field(default_factory=lambda: ["prose", "docs"])
    min_words: int = 50
    min_mean_word_length: float = 3
    max_mean_word_length: float = 10
    min_alphabetic_word_fraction: float = 0.6  # documentation holds code samples
    min_stop_words: int = 2
    stop_words: list[str] = field(default_factory=lambda: list(STOP_WORDS))
    max_duplicate_paragraph_fraction: float = 0.30
    max_duplicate_paragraph_char_fraction: float = 0.20
    # Paragraphs of at most this many characters (headings, speaker names) never count as repeats.
    min_repeated_paragraph_chars: int = 40


class ParagraphQualityFilter(WordRules):
    name = "paragraph_quality"
    config: ParagraphQualityConfig

    def judge(self, doc: Document, words: list[str]) -> Drop | None:
        config = self.config
        paragraphs = doc.view.lines  # re-flowed for the hard-wrapped kinds
        judged = [p for p in paragraphs if len(p) > config.min_repeated_paragraph_chars]
        return (
            self.length_drop(words)
            or self.letters_drop(words)
            or self.stop_words_drop(words)
            or repeats_drop(
                self,
                "paragraph",
                judged,
                len(paragraphs),
                len(doc.text),
                config.max_duplicate_paragraph_fraction,
                config.max_duplicate_paragraph_char_fraction,
            )
        )
