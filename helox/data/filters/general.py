"""Steps for every kind of document: normalisation, emptiness, length and link count."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import replace

from helox.data.documents import Document
from helox.data.filters.base import Drop, Step
from helox.data.kinds import unix_line_ends

URL_PATTERN = re.compile(r"(?:https?|ftp)://[^\s<>\"']+|www\.[^\s<>\"']+", re.IGNORECASE)
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
    """Drop documents holding more than `max_urls` URLs (link lists, spam)."""

    name = "max_urls"

    def __init__(self, max_urls: int):
        self.max_urls = max_urls

    def __call__(self, doc: Document, tally: Counter[str]) -> Document | Drop:
        # Every URL holds a "://" or starts with "www.": fewer of those than the limit is enough.
        if doc.text.count("://") + doc.view.lower.count("www.") <= self.max_urls:
            return doc
        for count, _ in enumerate(URL_PATTERN.finditer(doc.text), start=1):
            if count > self.max_urls:
                return self.drop("too_many_urls", f"more than {self.max_urls} URLs")
        return doc
