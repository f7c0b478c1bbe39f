"""Exact deduplication across all cleaned parts, holding only one 16-byte hash per document."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

from helox.config import DedupConfig
from helox.data.documents import Counts, Document, Stats
from helox.io import JsonlWriter, iter_jsonl, read_json, write_json

log = logging.getLogger(__name__)

DUPLICATE = "exact_duplicate"
DOCUMENT_KEYS = ("documents_in", "bytes_in", "documents_out", "bytes_out", "removed", "kinds")


class EmptyCorpusError(RuntimeError):
    """No document is left to train on; the message says which filters removed them."""


def text_key(text: str, lowercase: bool) -> bytes:
    """The hash two documents share when they differ only in case (if asked) and whitespace."""
    folded = text.casefold() if lowercase else text
    normalized = " ".join(folded.split())
    return hashlib.blake2b(normalized.encode("utf-8"), digest_size=16).digest()


def dedup_parts(
    inputs: list[str | os.PathLike],
    outputs: list[str | os.PathLike],
    stats_output: str | os.PathLike,
    config: DedupConfig,
    clean_stats: list[str | os.PathLike] | None = None,
) -> dict[str, Any]:
    """Keep the first occurrence of each text (input order, then line order); return the stats.

    Output i holds the survivors of input i, records unchanged. Raises
    EmptyCorpusError, citing the clean stats files when given, if no input holds a document.
    """
    if len(inputs) != len(outputs):
        raise ValueError(f"dedup needs one output per input: {len(inputs)} in, {len(outputs)} out")
    if not any(_has_documents(path) for path in inputs):
        raise EmptyCorpusError(empty_corpus_message(len(inputs), clean_stats))
    seen: set[bytes] = set()
    total = Stats(removed={DUPLICATE: Counts()})
    part_summaries = []
    for input_path, output_path in zip(inputs, outputs, strict=True):
        part = Stats(removed={DUPLICATE: Counts()})
        with JsonlWriter(output_path) as writer:
            for record in iter_jsonl(input_path):
                doc = Document(
                    record["text"], record.get("source", ""), record.get("kind", "prose")
                )
                part.count_in(doc)
                key = text_key(doc.text, config.lowercase)
                if key in seen:
                    part.count_removed(DUPLICATE, doc)
                    continue
                seen.add(key)
                writer.write(record)
                part.count_out(doc)
        part_summaries.append(
            {
                "input": str(input_path),
                "output": str(output_path),
                **part.flow.to_dict(),
                "duplicates": part.removed[DUPLICATE].documents,
            }
        )
        total = total + part
    full = total.to_dict()
    result = {**{key: full[key] for key in DOCUMENT_KEYS}, "parts": part_summaries}
    write_json(stats_output, result)
    log.info(
        "dedup: kept %d of %d documents across %d parts (%d exact duplicates removed)",
        total.flow.documents_out,
        total.flow.documents_in,
        len(inputs),
        total.removed[DUPLICATE].documents,
    )
    return result


def _has_documents(path: str | os.PathLike) -> bool:
    records = iter_jsonl(path)
    try:
        return next(records, None) is not None
    finally:
        records.close()


def empty_corpus_message(parts: int, clean_stats: list[str | os.PathLike] | None) -> str:
    """Say that nothing survived cleaning and, from the clean stats files, what removed it."""
    lines = [f"the corpus produced no documents: all {parts} cleaned parts are empty."]
    if clean_stats:
        total = Stats()
        for path in clean_stats:
            if Path(path).is_file():
                total = total + Stats.from_dict(read_json(path))
            else:
                lines.append(f"  (clean stats file {path} is missing)")
        lines.append(
            f"  clean stage: {total.files.seen} files seen, {total.files.read} read, "
            f"{total.files.skipped} skipped; {total.flow.documents_in} documents in, "
            f"{total.flow.documents_out} kept"
        )
        for reason, counts in total.removed.items():
            if counts.documents:
                lines.append(f"  removed by {reason}: {counts.documents} documents")
        for reason, count in total.skipped_by_reason.items():
            lines.append(f"  skipped ({reason}): {count}")
    lines.append(
        "Check that corpus.raw_dir holds files named by clean.text_extensions, "
        "clean.code_extensions or .jsonl, and the thresholds clean.min_text_length, "
        "clean.max_text_length and clean.max_urls in config.yaml."
    )
    return "\n".join(lines)
