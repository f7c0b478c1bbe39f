"""The eval card: every model stage's scores side by side, each metric beside its baseline,
then the imported models of eval.baselines as more columns.

Drawn from the evaluate stage's `results/eval/{stage}.json` files (and a baseline's
`results/eval/baselines/{name}.json`), as an HTML table for the report and as plain text for
`helox eval --card`. Rows marked with COMPARABLE (` *`) do not depend on how a tokenizer cuts
text, so they compare models of different tokenizers; the footnote says so under the table.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from helox.common.html import html_table, write_html
from helox.common.io import read_json

Row = list[Any]
COMPARABLE = " *"  # after a metric's name: its numbers compare across tokenizers
FOOTNOTE = (
    "* compares across tokenizers (a baseline's among them): bits per byte, per-byte accuracy "
    "and HumanEval; the other rows depend on how each model's tokenizer cuts the text."
)


def comparable(metric: str) -> str:
    """The metric's name marked as comparable across tokenizers."""
    return metric + COMPARABLE


def humaneval_rows(results: Sequence[Mapping[str, Any]]) -> list[Row]:
    """pass@k for each k any stage measured, with problems attempted and candidates timed out."""
    ks = sorted(
        {
            key
            for result in results
            for key in result.get("humaneval", {})
            if key.startswith("pass@")
        },
        key=lambda key: int(key.removeprefix("pass@")),
    )
    if not ks:
        return []
    rows = [
        [
            comparable(f"HumanEval {k}"),
            0.0,
            *(r.get("humaneval", {}).get(k, math.nan) for r in results),
        ]
        for k in ks
    ]
    for key, label in (
        ("problems_passed", comparable("problems passed")),
        ("attempted", "problems attempted"),
    ):
        rows.append(
            [f"HumanEval {label}", "", *(r.get("humaneval", {}).get(key, "") for r in results)]
        )
    return rows


def task_rows(results: Sequence[Mapping[str, Any]]) -> list[Row]:
    """Accuracy and per-byte accuracy beside chance and centered accuracy beside 0, for every
    task any stage ran."""
    names = sorted({name for result in results for name in result.get("tasks", {})})
    rows = []
    for name in names:
        scores = [result.get("tasks", {}).get(name, {}) for result in results]
        chance = next(score["chance"] for score in scores if score)
        shots = next(score["shots"] for score in scores if score)
        for metric, key, baseline in (
            (f"{name} accuracy ({shots}-shot)", "accuracy", chance),
            (comparable(f"{name} per-byte accuracy ({shots}-shot)"), "accuracy_norm", chance),
            (f"{name} centered accuracy", "centered_accuracy", 0.0),
        ):
            rows.append([metric, baseline, *(s.get(key, math.nan) for s in scores)])
    return rows


def column_name(result: Mapping[str, Any]) -> str:
    """A result's column: its stage, or an imported baseline's name marked as one."""
    return f"{result['stage']} (baseline)" if result.get("baseline") else result["stage"]


def card_table(results: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[Row]]:
    """Headers and rows: one row a metric, a baseline column, then one column a stage, then
    one column an imported baseline of eval.baselines."""
    results = sorted(results, key=lambda result: bool(result.get("baseline")))
    headers = ["metric", "baseline", *(column_name(result) for result in results)]
    rows = []
    for split in ("val", "test"):
        baseline = next(
            (r["bpb"][split]["unigram_bpb"] for r in results if "unigram_bpb" in r["bpb"][split]),
            math.nan,
        )
        rows.append(
            [
                comparable(f"{split} bits per byte (unigram baseline)"),
                baseline,
                *(r["bpb"][split]["bpb"] for r in results),
            ]
        )
    return headers, rows + humaneval_rows(results) + task_rows(results)


def read_results(paths: Sequence[str | os.PathLike]) -> list[dict[str, Any]]:
    """The evaluate stage's JSON files; a file that is not one is named."""
    results = [read_json(path) for path in paths]
    for path, result in zip(paths, results, strict=True):
        if not isinstance(result, dict) or "stage" not in result:
            raise ValueError(
                f'{path} is not an evaluate-stage result (it has no "stage"); '
                "pass results/eval/<stage>.json or the JSON of helox eval --suite --output"
            )
    return results


def format_card(results: Sequence[Mapping[str, Any]]) -> str:
    """The card as aligned plain text."""
    headers, rows = card_table(results)
    cells = [headers] + [[format_value(value) for value in row] for row in rows]
    widths = [max(len(row[column]) for row in cells) for column in range(len(headers))]
    lines = [
        "  ".join(
            value.ljust(width) if column == 0 else value.rjust(width)
            for column, (value, width) in enumerate(zip(row, widths, strict=True))
        )
        for row in cells
    ]
    return "\n".join([*lines, "", FOOTNOTE])


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def write_card_html(paths: Sequence[str | os.PathLike], output_path: str | os.PathLike) -> None:
    """The report's eval card from the evaluate stage's JSON files."""
    headers, rows = card_table(read_results(paths))
    body = html_table(headers, rows) + f"<p>{html.escape(FOOTNOTE)}</p>\n"
    write_html(output_path, "Evaluation", body)
