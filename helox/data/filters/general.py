"""Steps for every kind of document: normalisation, emptiness, length and the share of links."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import replace

from helox.data.documents import Document
from helox.data.filters.base import Drop, Step, ratio
from helox.data.kinds import unix_line_ends

URL_PATTERN = re.compile(r"(?:https?|ftp)://[^\s<>\"']+|www\.[^\s<>\"']+", re.IGNORECASE)
WWW = re.compile(r"www\.", re.IGNORECASE)
EXTRA_BLANK_LINES = re.compile(r"\n{4,}")


class UnicodeNormalizer(Step):
    name = "unicode_normalization"

    def __init__(self, form: str):
        self.form = form

    def __call__(self, doc: Document, tally: Counter[str]) -> Document:
        if unicodedata.is_normalized(self.form, doc.text):
            return doc
        return replace(doc, text=unicodedata.normalize(self.form, doc.text))


class WhitespaceNormalizer(Step):
    """Unix line ends (from Windows' and classic Mac's too) and no trailing blanks; text
    also loses runs of more than two blank lines."""

    name = "whitespace_normalization"

    def __call__(self, doc: Document, tally: Counter[str]) -> Document:
        text = unix_line_ends(doc.text)
        if doc.kind == "code":
            if " \n" in text or "\t\n" in text or text.endswith((" ", "\t")):
                text = "\n".join(line.rstrip(" \t") for line in text.split("\n"))
        else:
            text = "\n".join(line.rstrip() for line in text.split("\n"))
            text = EXTRA_BLANK_LINES.sub("\n\n\n", text).strip("\n")
        return doc if text == doc.text else replace(doc, text=text)


class EmptyFilter(Step):
    name = "empty"

    def __call__(self, doc: Document, tally: Counter[str]) -> Document | Drop:
        return doc if doc.text.strip() else self.drop("empty")


class MinLengthFilter(Step):
    """Drop documents shorter than `min_chars` characters."""

    name = "min_text_length"

    def __init__(self, min_chars: int):
        self.min_chars = min_chars

    def __call__(self, doc: Document, tally: Counter[str]) -> Document | Drop:
        if len(doc.text) >= self.min_chars:
            return doc
        return self.drop("too_short", f"{len(doc.text)} characters < {self.min_chars}")


class MaxLengthFilter(Step):
    """Drop (never truncate) documents longer than `max_chars` characters."""

    name = "max_text_length"

    def __init__(self, max_chars: int):
        self.max_chars = max_chars

    def __call__(self, doc: Document, tally: Counter[str]) -> Document | Drop:
        if len(doc.text) <= self.max_chars:
            return doc
        return self.drop("too_long", f"{len(doc.text)} characters > {self.max_chars}")


class UrlFilter(Step):
    """NeMo Curator's UrlsFilter: drop documents whose URLs take more than `max_fraction` of
    their characters, as link lists do; a long module that cites its papers stays."""

    name = "max_url_char_fraction"

    def __init__(self, max_fraction: float):
        self.max_fraction = max_fraction

    def __call__(self, doc: Document, tally: Counter[str]) -> Document | Drop:
        # Every URL holds a "://" or starts with "www.": a text with neither has none.
        if "://" not in doc.text and not WWW.search(doc.text):
            return doc
        url_chars = sum(match.end() - match.start() for match in URL_PATTERN.finditer(doc.text))
        share = ratio(url_chars, len(doc.text))
        if share <= self.max_fraction:
            return doc
        return self.drop("mostly_urls", f"{share:.3f} of characters in URLs > {self.max_fraction}")
