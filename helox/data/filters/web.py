"""C4's and FineWeb's line rules for web pages (Raffel et al. 2020; Penedo et al. 2024).

Each runs on the kinds its config lists (web text by default; their line rules would cut
hard-wrapped text apart). Both read the document's shared `view` (non-empty lines,
whitespace-split words, lowercased text), made once per text. A value exactly at a
threshold passes.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field, replace
from operator import methodcaller

from helox.data.documents import Document
from helox.data.filters.base import ConfiguredStep, Drop, ratio
from helox.data.filters.words import duplicates

C4_END_MARKS = (".", "?", "!", '"', "\u201d")
C4_CITATION = re.compile(r"\[\d*\]|\[edit\]|\[citation needed\]", re.IGNORECASE)
C4_POLICY = re.compile(
    "terms of use|privacy policy|cookie policy|uses cookies|use of cookies|use cookies"
)
SENTENCE_END = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*(?=\s|$)")

FINEWEB_STOP_CHARS = (".", "'", '"', "!", "?")


@dataclass
class C4Config:
    """C4's line and page rules (Raffel et al. 2020, with its TFDS reference values)."""

    enabled: bool = True
    # Web only: its line rules would cut hard-wrapped text to a fifth.
    kinds: list[str] = field(default_factory=lambda: ["web"])
    # FineWeb turns this off: it cuts hard-wrapped text.
    drop_lines_without_terminal_punctuation: bool = True
    min_words_per_line: int = 5
    max_word_length: int = 1000  # a line with a longer word is dropped
    min_sentences: int = 3  # left after the line rules
    remove_citations: bool = True  # "[1]", "[edit]", "[citation needed]"
    drop_javascript_lines: bool = True
    drop_policy_lines: bool = True  # "terms of use", "privacy policy", cookie notices
    drop_lorem_ipsum: bool = True  # the whole document
    drop_curly_brackets: bool = True  # the whole document


class C4Filter(ConfiguredStep[C4Config]):
    """C4's rules: keep only sentence-like lines; drop pages with code, lorem ipsum, few sentences.

    Follows the paper (Raffel et al. 2020) and its TFDS reference code: a kept line
    ends in terminal punctuation (not an ellipsis) and holds at least five words, none
    over 1000 characters, no "javascript" and no cookie or policy notice; a page with
    "lorem ipsum" or a curly bracket is dropped, as is one left with under three sentences.
    """

    name = "c4"

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


@dataclass
class FineWebConfig:
    """FineWeb's own line rules (Penedo et al. 2024)."""

    enabled: bool = True
    kinds: list[str] = field(default_factory=lambda: ["web"])
    min_terminal_punctuation_line_fraction: float = 0.12  # of lines that end in . ' " ! or ?
    max_short_line_fraction: float = 0.67
    short_line_length: int = 30  # characters
    max_duplicate_line_char_fraction: float = 0.01
    max_newlines_per_word: float = 0.3


class FineWebFilter(ConfiguredStep[FineWebConfig]):
    """FineWeb's line rules: enough lines end in punctuation, few are short or repeated."""

    name = "fineweb"

    def __init__(self, config: FineWebConfig):
        super().__init__(config)
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
