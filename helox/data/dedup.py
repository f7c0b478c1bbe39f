"""Deduplication across all cleaned parts: exact (normalised-text hash) and near (MinHash LSH),
in stages that scale out, after datatrove's staged MinHash (FineWeb's recipe). Each is a
Snakemake rule, and no job holds the whole corpus:

1. `sign_part` (helox.data.dedup_index), one job per part, streams a cleaned part and writes
   its index: a fixed-size record and a MinHash signature per document, and lanes of 64-bit
   keys sorted for the bucket step (the exact lane of text hashes, one lane per LSH band).
   No text leaves this step.
2. `find_pairs` (helox.data.dedup_pairs), `dedup.bucket_jobs` jobs, each reading one range of
   keys of every lane of every part, writes the pairs of documents that are duplicates: equal
   text hashes (`exact`), or band keys in common and at least `threshold` of their signature
   values equal (`near`).
3. `join_pairs` (helox.data.dedup_join), one job, joins the pairs into clusters with a
   union-find over the documents they link, keeps one document per cluster (the longest, then
   the smallest text hash, then the smallest source hash) and writes each part's removed
   documents and the stats. The choice depends only on the documents, never on the number of
   parts or bucket jobs.
4. `filter_part`, one job per part, copies a cleaned part without its removed documents.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from helox.common.config_files import ConfigError, build_sections
from helox.common.io import JsonlWriter, iter_jsonl, read_json
from helox.data.documents import Stats
from helox.data.minhash import lsh_shape_error

EXACT = "exact_duplicate"
NEAR = "near_duplicate"


@dataclass
class NearDedupConfig:
    """MinHash LSH: `bands` groups of `rows` signature values; `num_perm` = bands × rows."""

    enabled: bool = True
    ngram: int = 5  # words a shingle
    num_perm: int = 128
    bands: int = 32
    rows: int = 4
    threshold: float = 0.7  # share of equal signature values that makes two documents copies
    seed: int = 1  # of the random permutations

    def __post_init__(self) -> None:
        error = lsh_shape_error(self.bands, self.rows, self.num_perm)
        if error:
            raise ConfigError(error)


@dataclass
class DedupConfig:
    lowercase: bool = True  # compare texts casefolded (whitespace is always folded)
    exact: bool = True  # drop copies of the same normalised text
    # Jobs that find the duplicate pairs, each in its share of the hash space of every part.
    bucket_jobs: int = 2
    near: NearDedupConfig = field(default_factory=NearDedupConfig)

    def __post_init__(self) -> None:
        build_sections(self, "dedup")


class EmptyCorpusError(RuntimeError):
    """No document is left to train on; the message says which filters removed them."""


def filter_part(
    input_path: str | os.PathLike, removed: str | os.PathLike, output: str | os.PathLike
) -> int:
    """Copy a cleaned part without the documents that its `removed` file (written by the
    join) lists; return how many are kept."""
    with np.load(removed, allow_pickle=False) as listed:
        expected = int(listed["documents"])
        drop = np.zeros(expected, dtype=bool)
        drop[listed["index"]] = True
    with JsonlWriter(output) as writer:
        count = 0
        for count, record in enumerate(iter_jsonl(input_path), start=1):
            if count <= expected and not drop[count - 1]:
                writer.write(record)
        if count != expected:
            raise ValueError(
                f"{input_path} holds {count} documents but {removed} was computed from "
                f"{expected}: rerun the dedup_signatures, dedup_buckets and dedup_clusters rules"
            )
    return writer.count


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
        "Check that corpus.raw_dir (or each folder of corpus.sources) holds files named by "
        "clean.text_extensions, clean.code_extensions, .jsonl, .json or .parquet (each "
        "may be packed as .gz, .bz2, .xz or .zst), and the filter thresholds in the clean "
        "section of config.yaml; the clean logs list the files skipped and why."
    )
    return "\n".join(lines)
