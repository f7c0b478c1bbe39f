"""Cleaning steps: small named objects that take a Document and return it (maybe changed) or None.

`apply_steps` runs them in order and counts what each one removed or changed in
`Stats` under the step's `name`, so a new step needs nothing but its own class
and a line in `build_steps`.
"""

from __future__ import annotations

import re
import unicodedata
from abc import ABC, abstractmethod
from dataclasses import replace
from typing import ClassVar

from helox.config import CleanConfig
from helox.data.documents import Document, Stats

URL_PATTERN = re.compile(r"(?:https?|ftp)://[^\s<>\"']+|www\.[^\s<>\"']+", re.IGNORECASE)
EXTRA_BLANK_LINES = re.compile(r"\n{4,}")


class Step(ABC):
    """One cleaning step; `name` is the reason its removals are counted under."""

    name: ClassVar[str]

    @abstractmethod
    def __call__(self, doc: Document) -> Document | None: ...


class UnicodeNormalizer(Step):
    name = "unicode_normalization"

    def __init__(self, form: str):
        self.form = form

    def __call__(self, doc: Document) -> Document:
        if unicodedata.is_normalized(self.form, doc.text):
            return doc
        return replace(doc, text=unicodedata.normalize(self.form, doc.text))


class WhitespaceNormalizer(Step):
    """Unix line ends and no trailing blanks; prose also loses runs of more than two blank lines."""

    name = "whitespace_normalization"

    def __call__(self, doc: Document) -> Document:
        text = doc.text.replace("\r\n", "\n")
        if doc.kind == "code":
            text = "\n".join(line.rstrip(" \t") for line in text.split("\n"))
        else:
            text = "\n".join(line.rstrip() for line in text.replace("\r", "\n").split("\n"))
            text = EXTRA_BLANK_LINES.sub("\n\n\n", text).strip("\n")
        return doc if text == doc.text else replace(doc, text=text)


class EmptyFilter(Step):
    name = "empty"

    def __call__(self, doc: Document) -> Document | None:
        return doc if doc.text.strip() else None


class MinLengthFilter(Step):
    """Drop documents shorter than `min_chars` characters."""

    name = "min_text_length"

    def __init__(self, min_chars: int):
        self.min_chars = min_chars

    def __call__(self, doc: Document) -> Document | None:
        return doc if len(doc.text) >= self.min_chars else None


class MaxLengthFilter(Step):
    """Drop (never truncate) documents longer than `max_chars` characters."""

    name = "max_text_length"

    def __init__(self, max_chars: int):
        self.max_chars = max_chars

    def __call__(self, doc: Document) -> Document | None:
        return doc if len(doc.text) <= self.max_chars else None


class UrlFilter(Step):
    """Drop documents holding more than `max_urls` URLs (link lists, spam)."""

    name = "max_urls"

    def __init__(self, max_urls: int):
        self.max_urls = max_urls

    def __call__(self, doc: Document) -> Document | None:
        for count, _ in enumerate(URL_PATTERN.finditer(doc.text), start=1):
            if count > self.max_urls:
                return None
        return doc


def build_steps(config: CleanConfig) -> list[Step]:
    """The cleaning pipeline the `clean` section of the config asks for, in order."""
    steps: list[Step] = []
    if config.unicode_form != "none":
        steps.append(UnicodeNormalizer(config.unicode_form))
    steps += [
        WhitespaceNormalizer(),
        EmptyFilter(),
        MinLengthFilter(config.min_text_length),
        MaxLengthFilter(config.max_text_length),
        UrlFilter(config.max_urls),
    ]
    return steps


def apply_steps(doc: Document, steps: list[Step], stats: Stats) -> tuple[Document, str | None]:
    """Run `doc` through `steps`; return the last version and the name of the step that dropped it.

    The reason is None for a kept document. Every document is counted in, and
    then either out or removed under one step's name.
    """
    stats.count_in(doc)
    for step in steps:
        result = step(doc)
        if result is None:
            stats.count_removed(step.name, doc)
            return doc, step.name
        if result is not doc:
            stats.count_modified(step.name, doc, result)
            doc = result
    stats.count_out(doc)
    return doc, None
