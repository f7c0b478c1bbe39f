"""What `snakemake --report` shows, made from the files each stage already wrote.

Tables are small self-contained HTML pages, figures PNG files (`helox.pipeline.plots`), samples an
HTML page of prompts and what the base and SFT models wrote after them (`helox.pipeline.samples`).
Each `write_*` function makes the outputs of one report rule.
"""

from __future__ import annotations

import html
import logging
import math
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from helox.common.html import html_table, write_html
from helox.common.io import read_json
from helox.data.dedup import EXACT, NEAR
from helox.data.documents import Counts, Stats
from helox.pipeline import plots
from helox.tokens.vocab import load_tokenizer

log = logging.getLogger(__name__)

MAX_SOURCE_ROWS = 1000
# Stages whose training loss is not a next-token loss, so it says nothing of bits per byte.
PREFERENCE_STAGES = ("dpo",)
TOP_PIECES = 40

# ---------------------------------------------------------------------------- data stages


def clean_totals(clean_stats_paths: Sequence[str | os.PathLike]) -> Stats:
    """The stats of every cleaned part, summed."""
    total = Stats()
    for path in clean_stats_paths:
        total = total + Stats.from_dict(read_json(path))
    return total


def filter_rows(clean: Stats, dedup: dict) -> list[list[Any]]:
    """Per filter, in pipeline order: documents and bytes in, removed and kept."""
    rows = []
    for name, flow in clean.filters.items():
        removed = clean.removed.get(name, Counts())
        reasons = ", ".join(
            f"{rule} {n:,}" for rule, n in clean.rules.get(name, Counter()).most_common(3)
        )
        rows.append(
            [name, "clean", flow.documents_in, removed.documents, flow.documents_out]
            + [flow.bytes_in, removed.bytes, flow.bytes_out, reasons]
        )
    documents, size = dedup["documents_in"], dedup["bytes_in"]
    for name in (EXACT, NEAR):
        removed = dedup["removed"][name]
        kept_documents, kept_bytes = documents - removed["documents"], size - removed["bytes"]
        rows.append(
            [name, "dedup", documents, removed["documents"], kept_documents]
            + [size, removed["bytes"], kept_bytes, ""]
        )
        documents, size = kept_documents, kept_bytes
    flow = clean.flow
    rows.append(
        ["all filters", "clean + dedup", flow.documents_in]
        + [flow.documents_in - dedup["documents_out"], dedup["documents_out"], flow.bytes_in]
        + [flow.bytes_in - dedup["bytes_out"], dedup["bytes_out"], ""]
    )
    return rows


def write_filter_table(
    clean_stats_paths: Sequence[str | os.PathLike],
    dedup_stats_path: str | os.PathLike,
    path: str | os.PathLike,
) -> None:
    """Documents and bytes kept and removed by each cleaning filter and by deduplication."""
    clean, dedup = clean_totals(clean_stats_paths), read_json(dedup_stats_path)
    headers = ["Filter", "Stage", "Documents in", "Documents removed", "Documents kept"]
    headers += ["Bytes in", "Bytes removed", "Bytes kept", "Top reasons"]
    skipped = ", ".join(f"{reason} {n:,}" for reason, n in clean.skipped_by_reason.items())
    files = clean.files
    body = html_table(headers, filter_rows(clean, dedup)) + (
        f"<p>Raw files: {files.seen:,} seen, {files.read:,} read, {files.skipped:,} skipped. "
        f"Entries skipped before cleaning: {html.escape(skipped or 'none')}.</p>"
    )
    write_html(path, "Documents and bytes per filter", body)


def source_row(name: str, flow: Any) -> list[Any]:
    return [name, flow.documents_in, flow.documents_out, flow.documents_in - flow.documents_out] + [
        flow.bytes_in,
        flow.bytes_out,
        flow.bytes_in - flow.bytes_out,
    ]


def write_source_table(
    clean_stats_paths: Sequence[str | os.PathLike], path: str | os.PathLike
) -> None:
    """Documents and bytes kept and removed by cleaning, per kind and per raw file."""
    clean = clean_totals(clean_stats_paths)
    headers = ["Source", "Documents in", "Documents kept", "Documents removed"]
    headers += ["Bytes in", "Bytes kept", "Bytes removed or trimmed"]
    kinds = [source_row(kind, flow) for kind, flow in sorted(clean.kinds.items())]
    ordered = sorted(
        clean.sources.items(),
        key=lambda item: (
            item[1].documents_out - item[1].documents_in,
            item[1].bytes_out - item[1].bytes_in,
            item[0],
        ),
    )
    files = [source_row(name, flow) for name, flow in ordered[:MAX_SOURCE_ROWS]]
    more = len(ordered) - len(files)
    body = (
        "<h2>By kind</h2>\n"
        + html_table(headers, kinds)
        + "<h2>By raw file (most documents removed first)</h2>\n"
        + html_table(headers, files)
        + (f"<p>{more:,} more files not listed.</p>" if more > 0 else "")
    )
    write_html(path, "Documents and bytes per source", body)


def plot_clusters(dedup_stats_path: str | os.PathLike, path: str | os.PathLike) -> None:
    """A bar per duplicate-cluster size: how many clusters have that many documents."""
    dedup = read_json(dedup_stats_path)
    clusters, removed = dedup["clusters"], dedup["removed"]
    sizes = sorted(clusters["sizes"].items(), key=lambda item: int(item[0]))
    plots.plot_bars(
        path,
        f"{clusters['count']:,} duplicate clusters holding {clusters['documents']:,} documents\n"
        f"removed: {removed[EXACT]['documents']:,} exact, {removed[NEAR]['documents']:,} near "
        "duplicates",
        "documents in the cluster",
        "clusters",
        [size for size, _ in sizes],
        [count for _, count in sizes],
        empty_message="no duplicate clusters",
    )


def plot_splits(manifest_path: str | os.PathLike, path: str | os.PathLike) -> None:
    """A bar per split: its tokens, annotated with its documents and bytes per token."""
    splits = read_json(manifest_path)["splits"]
    names = list(splits)
    plots.plot_bars(
        path,
        "tokens per split",
        "split",
        "tokens",
        names,
        [splits[name]["tokens"] for name in names],
        [
            f"{splits[n]['tokens']:,} tokens\n{splits[n]['documents']:,} docs, "
            f"{splits[n]['bytes'] / max(1, splits[n]['tokens']):.2f} B/token"
            for n in names
        ],
    )


def mixture_rows(clean: Stats, dedup: dict, manifest: dict, drawn: dict) -> list[list[Any]]:
    """Per source: its target share of the training rows (from its weight) and the share it
    got, the train tokens pretraining drew and those its shards hold, its epochs, its val and
    test tokens, and its documents through clean and dedup."""
    total_drawn = sum(row["train_tokens"] for row in drawn.values()) or 1
    rows = []
    for name, row in manifest.get("sources", {}).items():
        taken = drawn.get(name, {"share": 0.0, "train_tokens": 0, "epochs": 0.0})
        cleaned = clean.corpus.get(name)
        deduplicated = dedup.get("corpus", {}).get(name, {})
        rows.append(
            [name, 100 * taken["share"], 100 * taken["train_tokens"] / total_drawn]
            + [taken["train_tokens"], row["tokens"]["train"], taken["epochs"]]
            + [row["tokens"]["val"], row["tokens"]["test"]]
            + [cleaned.documents_in if cleaned else 0, cleaned.documents_out if cleaned else 0]
            + [deduplicated.get("documents_out", 0)]
        )
    return rows


def write_mixture(
    clean_stats_paths: Sequence[str | os.PathLike],
    dedup_stats_path: str | os.PathLike,
    manifest_path: str | os.PathLike,
    pretrain_metrics_path: str | os.PathLike,
    outputs: Mapping[str, str | os.PathLike],
) -> None:
    """The mixture of sources: a table of each source through the stages and pretraining, and
    a bar per source of its share of the training tokens against its weight's share;
    `outputs` maps mixture and mixture_figure to their paths."""
    rows = mixture_rows(
        clean_totals(clean_stats_paths),
        read_json(dedup_stats_path),
        read_json(manifest_path),
        read_json(pretrain_metrics_path).get("sources", {}),
    )
    headers = ["Source", "Target share (%)", "Drawn share (%)", "Train tokens drawn"]
    headers += ["Train tokens in the shards", "Epochs", "Val tokens", "Test tokens"]
    headers += ["Documents read", "Kept by cleaning", "Kept by dedup"]
    write_html(
        outputs["mixture"],
        "Mixture of sources",
        html_table(headers, rows)
        + "<p>Pretraining draws each step's rows from the sources by weight. Epochs: the "
        "source's train windows drawn over those its shards hold (above 1: repeated, below "
        "1: some left unseen). Validation and test keep the natural proportions.</p>",
    )
    plots.plot_bars(
        outputs["mixture_figure"],
        "share of the training tokens per source",
        "source",
        "share of training tokens (%)",
        [row[0] for row in rows],
        [row[2] for row in rows],
        [f"{row[2]:.1f}% (target {row[1]:.1f}%)\n{row[5]:.2f} epochs" for row in rows],
        empty_message="no sources in the manifest",
    )


def visible(piece: str) -> str:
    """A piece with its newlines and tabs written as escapes (▁, SentencePiece's space, stays;
    a byte-level BPE piece shows the text it stands for)."""
    return piece.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def top_pieces(
    manifest_path: str | os.PathLike, tokenizer_path: str | os.PathLike, count: int
) -> list[list[Any]]:
    """The `count` most frequent pieces of the train split: rank, id, piece, count, share (%)."""
    from helox.tokens.loader import TokenStream  # imports torch, which the other figures skip

    train = TokenStream(manifest_path, "train")
    counts = train.bincount(train.vocab_size)
    tokenizer = load_tokenizer(tokenizer_path)
    total = max(1, int(counts.sum()))
    ranked = counts.argsort(kind="stable")[::-1][:count]
    return [
        [rank, int(i), visible(tokenizer.piece(int(i))), int(counts[i])]
        + [100 * int(counts[i]) / total]
        for rank, i in enumerate(ranked, start=1)
    ]


def write_tokenizer_table(
    eval_path: str | os.PathLike,
    tokenizer_path: str | os.PathLike,
    manifest_path: str | os.PathLike,
    path: str | os.PathLike,
) -> None:
    """Bytes per token per kind on held-out documents, and the most frequent pieces."""
    evaluation = read_json(eval_path)
    headers = ["Kind", "Documents", "Bytes", "Tokens", "Bytes per token"]
    headers += ["Byte-fallback share", "Round-trip failures"]
    keys = ["documents", "bytes", "tokens", "bytes_per_token"]
    keys += ["byte_fallback_share", "roundtrip_failures"]
    kinds = {**evaluation["per_kind"], "all": evaluation["overall"]}
    rows = [[kind] + [numbers.get(key, "") for key in keys] for kind, numbers in kinds.items()]
    pieces = top_pieces(manifest_path, tokenizer_path, TOP_PIECES)
    body = (
        f"<p>Tokenizer kind {html.escape(evaluation.get('kind', 'helox'))}: "
        f"vocabulary of {evaluation['vocab_size']:,} pieces, measured on held-out documents "
        f"({html.escape(evaluation.get('held_out', ''))}).</p>\n"
        + html_table(headers, rows)
        + f"<h2>The {len(pieces)} most frequent pieces of the train split</h2>\n"
        + html_table(["Rank", "Id", "Piece", "Count", "Share of tokens (%)"], pieces)
    )
    write_html(path, "Tokenizer", body)


def write_data_report(
    clean_stats_paths: Sequence[str | os.PathLike],
    dedup_stats_path: str | os.PathLike,
    tokenizer_eval_path: str | os.PathLike,
    tokenizer_path: str | os.PathLike,
    manifest_path: str | os.PathLike,
    outputs: Mapping[str, str | os.PathLike],
) -> None:
    """The data stages' tables and figures: `outputs` maps filters, sources, clusters,
    tokenizer and splits to their paths."""
    write_filter_table(clean_stats_paths, dedup_stats_path, outputs["filters"])
    write_source_table(clean_stats_paths, outputs["sources"])
    plot_clusters(dedup_stats_path, outputs["clusters"])
    write_tokenizer_table(tokenizer_eval_path, tokenizer_path, manifest_path, outputs["tokenizer"])
    plot_splits(manifest_path, outputs["splits"])


# ---------------------------------------------------------------------------- training


def columns(entries: Sequence[Mapping[str, float]], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of the entries that recorded `key`."""
    chosen = [entry for entry in entries if key in entry]
    return [entry["step"] for entry in chosen], [entry[key] for entry in chosen]


def write_training_figures(
    metrics_path: str | os.PathLike, stage: str, outputs: Mapping[str, str | os.PathLike]
) -> None:
    """Loss, bits per byte, learning rate and throughput of one training stage against steps
    and tokens: `outputs` maps loss, bpb, lr and throughput to their paths."""
    metrics = read_json(metrics_path)
    steps = metrics.get("steps") or 0
    tokens_per_step = metrics.get("train_tokens_seen", 0) / steps if steps else 0.0
    train = metrics.get("loss_history", [])
    train_steps, train_loss = [s for s, _ in train], [loss for _, loss in train]
    logs, evals = metrics.get("log_history", []), metrics.get("eval_history", [])
    plots.plot_series(
        outputs["loss"],
        f"{stage}: training and validation loss",
        "loss (nats per token)",
        [
            ("train, each step", train_steps, train_loss, "C0-"),
            ("train, mean between log lines", *columns(logs, "train/loss"), "C2-"),
            ("validation", *columns(evals, "val_loss"), "C3o-"),
        ],
        tokens_per_step,
    )
    val_steps, val_bpb = columns(evals, "val_bpb")
    last = next((entry for entry in reversed(evals) if "val_bpb" in entry), None)
    scale = last["val_bpb"] / last["val_loss"] if last and last["val_loss"] else math.nan
    estimated = [("train (estimated)", train_steps, [loss * scale for loss in train_loss], "C0-")]
    plots.plot_series(
        outputs["bpb"],
        f"{stage}: bits per byte",
        "bits per byte",
        [
            *(estimated if stage not in PREFERENCE_STAGES else []),
            ("validation", val_steps, val_bpb, "C3o-"),
        ],
        tokens_per_step,
    )
    plots.plot_series(
        outputs["lr"],
        f"{stage}: learning rate",
        "learning rate",
        [("learning rate", *columns(logs, "train/lr"), "C1.-")],
        tokens_per_step,
    )
    mean_rate = metrics.get("tokens_per_second", 0.0)
    plots.plot_series(
        outputs["throughput"],
        f"{stage}: throughput (mean {mean_rate:,.0f} tokens/s)",
        "tokens per second",
        [("tokens per second", *columns(logs, "train/tokens_per_second"), "C4.-")],
        tokens_per_step,
    )
