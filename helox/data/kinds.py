"""Kinds of text and how to tell them apart: web pages, long-form prose, documentation, code.

Each kind gets the filters that fit it (`helox.data.filters.build_steps`): C4's and FineWeb's
line rules only for web text, whose lines are paragraphs or boilerplate; long-form prose
(books, essays, licences) and documentation are hard-wrapped, so they are judged on
re-flowed paragraphs and never lose a line for lacking a full stop.

Code is told by file extension (or by a source's or record's `kind`); among the text kinds
`detect_kind` decides from the text itself:

- docs: at least `MARKUP_SHARE` of the non-empty lines are markup (headings, underlines,
  bullets, fences, directives, table rows, help-file tags);
- prose: at least `WRAPPED_SHARE` of the lines continue a sentence onto the next line of
  the same paragraph, the mark of hard-wrapped text, and few lines are long;
- web: everything else (a paragraph or a menu item per line).
"""

from __future__ import annotations

import re
from typing import Literal

Kind = Literal["web", "prose", "docs", "code"]
KINDS: tuple[str, ...] = ("web", "prose", "docs", "code")
TEXT_KINDS: tuple[str, ...] = ("web", "prose", "docs")
# Kinds judged on re-flowed paragraphs instead of lines.
REFLOWED_KINDS = frozenset({"prose", "docs"})

MARKUP_LINE = re.compile(
    r"^\s*(?:"
    r"#{1,6}\s"  # Markdown heading
    r"|([=\-~^*+#\"'`])\1{2,}\s*$"  # reST / setext underline or rule
    r"|[-*+\u2022]\s+\S"  # bullet
    r"|\d{1,3}[.)]\s+\S"  # numbered item
    r"|```|~~~"  # code fence
    r"|\.\.\s"  # reST directive or comment
    r"|\|.*\|\s*$"  # table row
    r"|:[\w-]+:"  # reST field
    r")"
    r"|\*[\w.:<>-]+\*\s*$"  # Vim help tag at the end of a line
    r"|\s::\s*$"  # reST literal block
)
SENTENCE_END = (".", "!", "?", ":", ";", '"', "'", ")", "\u201d", "\u2019")
MARKUP_SHARE = 0.15
WRAPPED_SHARE = 0.15
LONG_LINE = 120
# A wrapped line is at least this long: a column of short rows (a table, a list) is not prose.
MIN_WRAPPED_LINE = 30
MAX_LONG_LINE_SHARE = 0.1


def paragraphs(text: str) -> list[str]:
    """The paragraphs of `text` (split at blank lines), each re-flowed into one line."""
    found = []
    for block in re.split(r"\n[ \t]*\n", text):
        words = block.split()
        if words:
            found.append(" ".join(words))
    return found


def unix_line_ends(text: str) -> str:
    """`text` with Windows ("\\r\\n") and classic Mac ("\\r") line ends made "\\n"."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def detect_kind(text: str) -> Kind:
    """web, prose or docs, from the shape of the lines of `text` (see the module docstring)."""
    text = unix_line_ends(text)
    lines = [line for line in text.split("\n") if line.strip()]
    if not lines:
        return "web"
    markup = sum(1 for line in lines if MARKUP_LINE.search(line))
    if markup >= MARKUP_SHARE * len(lines):
        return "docs"
    long_lines = sum(1 for line in lines if len(line) > LONG_LINE)
    if long_lines > MAX_LONG_LINE_SHARE * len(lines):
        return "web"
    return "prose" if wrapped_lines(text) >= WRAPPED_SHARE * len(lines) else "web"


def wrapped_lines(text: str) -> int:
    """Lines of prose length followed, in the same paragraph, by more of an unfinished sentence."""
    count = 0
    previous = ""
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped and len(previous) >= MIN_WRAPPED_LINE and not previous.endswith(SENTENCE_END):
            count += 1
        previous = stripped
    return count
