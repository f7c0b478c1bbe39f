"""Small standalone HTML pages: a table of numbers and text, written atomically."""

from __future__ import annotations

import html
import logging
import math
import os
from collections.abc import Sequence
from typing import Any

from helox.common.io import atomic_path

log = logging.getLogger(__name__)

STYLE = """
body { font-family: sans-serif; font-size: 13px; margin: 1em; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; }
th { background: #f0f0f0; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f6f6f6; padding: 8px; white-space: pre-wrap; }
pre b { color: #1f4e9c; }
"""


def cell(value: Any) -> str:
    """One table cell: numbers right-aligned with separators, text escaped."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"<td>{html.escape(str(value))}</td>"
    if isinstance(value, int):
        text = f"{value:,}"
    elif math.isnan(value):
        text = "n/a"
    else:
        text = f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return f'<td class="number">{text}</td>'


def html_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>\n" for row in rows)
    return f"<table><tr>{head}</tr>\n{body}</table>\n"


def write_html(path: str | os.PathLike, title: str, body: str) -> None:
    """A standalone page (the report shows it in a frame), written atomically."""
    page = (
        f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head>\n<body><h1>{html.escape(title)}</h1>\n{body}</body></html>\n"
    )
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    log.info("wrote %s", path)
