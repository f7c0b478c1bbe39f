"""The text of an HTML page as a reader sees it: no tags, scripts, styles or navigation.

Block elements (paragraphs, headings, list items, table rows) end lines, `<pre>` keeps its
layout, and runs of spaces elsewhere become one, so the kind detection and the filters see
the page's text rather than its markup. Files of HTML_EXTENSIONS named by
`clean.text_extensions` are read through `html_text`.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

HTML_EXTENSIONS = frozenset({".html", ".htm", ".xhtml"})

# Elements whose content is never shown as text (or is a site's menu, not its page).
HIDDEN = frozenset({"script", "style", "noscript", "template", "svg", "title", "nav"})
# Elements that start and end a paragraph, and those that only start and end a line.
PARAGRAPHS = frozenset(
    {"p", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote", "table", "ul", "ol", "dl"}
    | {"section", "article", "header", "footer", "main", "aside", "figure", "hr", "form"}
)
LINES = frozenset({"div", "li", "tr", "dt", "dd", "br", "caption", "figcaption", "option"})
CELLS = frozenset({"td", "th"})
SPACES = re.compile(r"\s+")
EXTRA_BLANK_LINES = re.compile(r"\n{3,}")


class _TextCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden_depth = 0
        self.pre_depth = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in HIDDEN:
            self.hidden_depth += 1
        elif tag == "pre":
            self.pre_depth += 1
        self._boundary(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in HIDDEN:
            self.hidden_depth = max(0, self.hidden_depth - 1)
        elif tag == "pre":
            self.pre_depth = max(0, self.pre_depth - 1)
        self._boundary(tag)

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        self._boundary(tag)

    def handle_data(self, data: str) -> None:
        if self.hidden_depth:
            return
        if not self.pre_depth:
            data = SPACES.sub(" ", data)
            if self._at_line_start():
                data = data.lstrip(" ")
        self.parts.append(data)

    def _boundary(self, tag: str) -> None:
        if tag in PARAGRAPHS:
            self._end_line("\n\n")
        elif tag in LINES:
            self._end_line("\n")
        elif tag in CELLS:
            self.parts.append(" ")

    def _end_line(self, ending: str) -> None:
        if self.parts and self.parts[-1].endswith(" ") and not self.pre_depth:
            self.parts[-1] = self.parts[-1].rstrip(" ")
        self.parts.append(ending)

    def _at_line_start(self) -> bool:
        return not self.parts or self.parts[-1].endswith("\n")


def html_text(page: str) -> str:
    """The visible text of `page`, a line per block element, paragraphs apart."""
    collector = _TextCollector()
    collector.feed(page)
    collector.close()
    text = "".join(collector.parts)
    lines = "\n".join(line.rstrip() for line in text.split("\n"))
    return EXTRA_BLANK_LINES.sub("\n\n", lines).strip("\n")
