"""Deduplication across all cleaned parts: exact (normalised-text hash) and near (MinHash LSH).

Three steps, each a Snakemake rule:

1. `sign_part`, one job per part, streams a cleaned part and writes a fixed-size record per
   document: the hash of its normalised text, a hash of its source, its size in bytes, its
   number of shingles and its MinHash signature. No text leaves this step.
2. `cluster_parts` gathers the records of every part and joins documents into clusters with a
   union-find: equal text hashes (`exact`), and LSH candidates, pairs whose signatures agree on
   every row of some band, when at least `threshold` of their signature values agree (`near`).
   Each cluster keeps one document: the longest, then the smallest text hash, then the
   smallest source hash. The choice depends only on the documents, never on how the corpus
   was split into parts. It writes the removed documents (`duplicates.npz`) and the stats.
3. `filter_part`, one job per part, copies a cleaned part without its removed documents.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from helox.common.config_files import ConfigError, build_sections
from helox.common.io import JsonlWriter, atomic_path, iter_jsonl, read_json, write_json
from helox.common.progress import ProgressBar
from helox.data.corpus import DEFAULT_SOURCE
from helox.data.documents import Stats
from helox.data.minhash import MinHasher, UnionFind, band_keys, bucket_pairs, lsh_shape_error

log = logging.getLogger(__name__)

EXACT = "exact_duplicate"
NEAR = "near_duplicate"
# Characters of text hashed together in one numpy batch when signing a part.
BATCH_CHARS = 1 << 18
# Candidate pairs whose signatures are compared at once.
PAIR_BATCH = 1 << 12


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
    near: NearDedupConfig = field(default_factory=NearDedupConfig)

    def __post_init__(self) -> None:
        build_sections(self, "dedup")


class EmptyCorpusError(RuntimeError):
    """No document is left to train on; the message says which filters removed them."""


def text_key(text: str, lowercase: bool) -> bytes:
    """The hash two documents share when they differ only in case (if asked) and whitespace."""
    folded = text.casefold() if lowercase else text
    normalized = " ".join(folded.split())
    return hashlib.blake2b(normalized.encode("utf-8"), digest_size=16).digest()


def source_key(source: str) -> bytes:
    return hashlib.blake2b(source.encode("utf-8"), digest_size=8).digest()


def sign_part(input_path: str | os.PathLike, output: str | os.PathLike, hasher: MinHasher) -> int:
    """Write the fixed-size record of every document of one cleaned part (`.npz`); return the count.

    Arrays, one row per document in file order: `exact` (n × 2 uint64), `source` (uint64),
    `bytes` (int64), `shingles` (int64), `signature` (n × num_perm uint32) and `corpus`
    (int32, the document's `corpus.sources` name as an index into `corpus_names`).
    """
    exact_keys, source_keys, sizes = [], [], []
    corpus_index: dict[str, int] = {}
    corpus_of_docs: list[int] = []
    signatures, shingle_counts = [], []
    batch: list[str] = []
    batch_chars = 0

    def sign_batch() -> None:
        signature, counts = hasher.signatures(batch)
        signatures.append(signature)
        shingle_counts.append(counts)
        batch.clear()

    bar = ProgressBar(
        f"signing {input_path}",
        os.path.getsize(input_path),
        "MB",
        scale=1e6,
        note=lambda: f"{len(sizes):,} docs",
    )
    for record in iter_jsonl(input_path, on_read=bar.update):
        text = record["text"]
        exact_keys.append(text_key(text, hasher.lowercase))
        source_keys.append(source_key(record.get("source", "")))
        sizes.append(len(text.encode("utf-8")))
        corpus = record.get("corpus") or DEFAULT_SOURCE
        corpus_of_docs.append(corpus_index.setdefault(corpus, len(corpus_index)))
        batch.append(text)
        batch_chars += len(text)
        if batch_chars >= BATCH_CHARS:
            sign_batch()
            batch_chars = 0
    sign_batch()
    bar.close()
    with atomic_path(output) as tmp, open(tmp, "wb") as handle:
        np.savez(
            handle,
            exact=np.frombuffer(b"".join(exact_keys), dtype="<u8").reshape(-1, 2),
            source=np.frombuffer(b"".join(source_keys), dtype="<u8"),
            bytes=np.array(sizes, dtype=np.int64),
            shingles=np.concatenate(shingle_counts),
            signature=np.concatenate(signatures),
            corpus=np.array(corpus_of_docs, dtype=np.int32),
            corpus_names=np.array(list(corpus_index) or [""], dtype=str),
        )
    log.info("signed %d documents of %s into %s", len(sizes), input_path, output)
    return len(sizes)


def cluster_parts(
    signature_paths: list[str | os.PathLike],
    duplicates_output: str | os.PathLike,
    stats_output: str | os.PathLike,
    config: DedupConfig,
    clean_stats: list[str | os.PathLike] | None = None,
) -> dict[str, Any]:
    """Cluster the documents of every part; write which to remove and the stats; return the stats.

    `duplicates_output` (`.npz`) lists each removed document by `part` and `index` (its line
    in the part), the document kept in its place (`keep_part`, `keep_index`) and whether it
    was only a near duplicate (`near`), plus each part's document count (`documents`).
    Raises EmptyCorpusError, citing the clean stats files when given, if no part holds a document.
    """
    records, documents = _gather(signature_paths)
    if not documents.sum():
        raise EmptyCorpusError(empty_corpus_message(len(signature_paths), clean_stats))
    exact, sizes = records["exact"], records["bytes"]
    part = np.repeat(np.arange(len(documents)), documents)
    index = np.arange(len(part)) - np.repeat(np.cumsum(documents) - documents, documents)
    # Rank 0 is the document every cluster would rather keep; a cluster keeps its lowest rank.
    order = np.lexsort((index, part, records["source"], exact[:, 1], exact[:, 0], -sizes))
    clusters = UnionFind.of_size(len(order))
    if config.exact:
        clusters.union(*_exact_pairs(exact[order]))
    lsh = {"candidate_pairs": 0, "merged_pairs": 0}
    if config.near.enabled:
        _check_width(records["signature"], config, signature_paths)
        ranked_has_shingles = records["shingles"][order] > 0
        lsh = _merge_near(clusters, records["signature"], order, ranked_has_shingles, config)
    roots = clusters.roots()
    removed_ranks = np.flatnonzero(roots != np.arange(len(roots)))
    removed, kept_for = order[removed_ranks], order[roots[removed_ranks]]
    near = np.any(exact[removed] != exact[kept_for], axis=1)
    with atomic_path(duplicates_output) as tmp, open(tmp, "wb") as handle:
        np.savez(
            handle,
            part=part[removed],
            index=index[removed],
            keep_part=part[kept_for],
            keep_index=index[kept_for],
            near=near,
            documents=documents,
        )
    stats = _stats(part, sizes, removed, near, roots, lsh, signature_paths)
    stats["corpus"] = _corpus_stats(records, sizes, removed, near)
    write_json(stats_output, stats)
    log.info(
        "dedup: kept %d of %d documents across %d parts (%d exact, %d near duplicates, "
        "%d clusters, largest %d)",
        stats["documents_out"],
        stats["documents_in"],
        len(signature_paths),
        stats["removed"][EXACT]["documents"],
        stats["removed"][NEAR]["documents"],
        stats["clusters"]["count"],
        stats["clusters"]["largest"],
    )
    return stats


def filter_part(
    input_path: str | os.PathLike,
    duplicates: str | os.PathLike,
    part: int,
    output: str | os.PathLike,
) -> int:
    """Copy cleaned part `part` without the documents `duplicates` removes; return how many kept."""
    with np.load(duplicates, allow_pickle=False) as removed:
        expected = int(removed["documents"][part])
        drop = np.zeros(expected, dtype=bool)
        drop[removed["index"][removed["part"] == part]] = True
    with JsonlWriter(output) as writer:
        count = 0
        for count, record in enumerate(iter_jsonl(input_path), start=1):
            if count <= expected and not drop[count - 1]:
                writer.write(record)
        if count != expected:
            raise ValueError(
                f"{input_path} holds {count} documents but {duplicates} was computed from "
                f"{expected}: rerun the dedup_signatures and dedup_clusters rules"
            )
    return writer.count


def _gather(paths: list[str | os.PathLike]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Every part's records concatenated, and each part's document count.

    The result is allocated once and filled a part at a time, so memory peaks at the result
    plus one part's records. `corpus` indexes the names of all parts (`corpus_names`).
    """
    names: dict[str, int] = {}
    counts = []
    for path in paths:
        with np.load(path, allow_pickle=False) as part:
            counts.append(len(part["bytes"]))
    ends = np.cumsum(counts)
    # Parts signed before sources were recorded count under DEFAULT_SOURCE.
    gathered: dict[str, np.ndarray] = {"corpus": np.full(ends[-1], -1, dtype=np.int32)}
    for path, end, count in zip(paths, ends, counts, strict=True):
        with np.load(path, allow_pickle=False) as part:
            for name in part.files:
                if name == "corpus_names":
                    continue
                values = part[name]
                if name == "corpus":
                    local = [names.setdefault(str(n), len(names)) for n in part["corpus_names"]]
                    values = np.array(local, dtype=np.int32)[values]
                if name not in gathered:
                    gathered[name] = np.empty((ends[-1], *values.shape[1:]), dtype=values.dtype)
                gathered[name][end - count : end] = values
    unnamed = gathered["corpus"] < 0
    if unnamed.any():
        gathered["corpus"][unnamed] = names.setdefault(DEFAULT_SOURCE, len(names))
    gathered["corpus_names"] = np.array(list(names), dtype=str)
    return gathered, np.array(counts, dtype=np.int64)


@dataclass
class _GroupFlow:
    """Documents and bytes of each group of documents (a source, a part), arrays indexed by
    group: all that came in, and the exact and the near copies removed."""

    docs_in: np.ndarray
    bytes_in: np.ndarray
    exact_docs: np.ndarray
    exact_bytes: np.ndarray
    near_docs: np.ndarray
    near_bytes: np.ndarray

    @classmethod
    def count(
        cls,
        group_of: np.ndarray,
        groups: int,
        sizes: np.ndarray,
        removed: np.ndarray,
        near: np.ndarray,
    ) -> _GroupFlow:
        """Count the documents, each in its group (`group_of`, one of `groups`) with its size:
        all of them, and the `removed` ones as exact copies or, where `near`, near copies."""

        def tally(selected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            selected_groups = group_of[selected]
            docs = np.bincount(selected_groups, minlength=groups)
            return docs, np.bincount(selected_groups, weights=sizes[selected], minlength=groups)

        docs_in, bytes_in = tally(np.arange(len(group_of)))
        exact_docs, exact_bytes = tally(removed[~near])
        near_docs, near_bytes = tally(removed[near])
        return cls(docs_in, bytes_in, exact_docs, exact_bytes, near_docs, near_bytes)

    @cached_property
    def docs_out(self) -> np.ndarray:
        return self.docs_in - self.exact_docs - self.near_docs

    @cached_property
    def bytes_out(self) -> np.ndarray:
        return self.bytes_in - self.exact_bytes - self.near_bytes

    def row(self, group: int) -> dict[str, int]:
        """One group's counts, as the stats list them."""
        return {
            "documents_in": int(self.docs_in[group]),
            "bytes_in": int(self.bytes_in[group]),
            "documents_out": int(self.docs_out[group]),
            "bytes_out": int(self.bytes_out[group]),
            "exact_duplicates": int(self.exact_docs[group]),
            "near_duplicates": int(self.near_docs[group]),
        }


def _corpus_stats(
    records: dict[str, np.ndarray], sizes: np.ndarray, removed: np.ndarray, near: np.ndarray
) -> dict[str, dict[str, int]]:
    """Per `corpus.sources` name: documents and bytes in and out, duplicates removed.

    Clusters span sources: a document removed as a copy of another source's is counted
    under its own source.
    """
    if "corpus" not in records:
        return {}
    names = records["corpus_names"]
    flow = _GroupFlow.count(records["corpus"], len(names), sizes, removed, near)
    return {str(name): flow.row(i) for i, name in enumerate(names)}


def _check_width(signature: np.ndarray, config: DedupConfig, paths: list) -> None:
    if signature.shape[1] != config.near.num_perm:
        raise ValueError(
            f"signatures in {paths[0]} … have {signature.shape[1]} values, but "
            f"dedup.near.num_perm is {config.near.num_perm}: rerun the dedup_signatures rule"
        )


def _exact_pairs(ranked_exact: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of ranks with equal text hashes: each with the next-lower rank of the same text."""
    order = np.lexsort((np.arange(len(ranked_exact)), ranked_exact[:, 1], ranked_exact[:, 0]))
    sorted_exact = ranked_exact[order]
    same = np.all(sorted_exact[1:] == sorted_exact[:-1], axis=1)
    return order[1:][same], order[:-1][same]


def _merge_near(
    clusters: UnionFind,
    signature: np.ndarray,
    order: np.ndarray,
    ranked_has_shingles: np.ndarray,
    config: DedupConfig,
) -> dict[str, int]:
    """Band by band, merge candidate pairs whose signatures agree on ≥ threshold of values."""
    near = config.near
    ranks = np.flatnonzero(ranked_has_shingles)
    members = order[ranks]
    needed = near.threshold * near.num_perm
    candidates = merged = 0
    for band in range(near.bands):
        columns = slice(band * near.rows, (band + 1) * near.rows)
        left, right = bucket_pairs(band_keys(signature[members, columns]))
        roots = clusters.roots()
        apart = roots[ranks[left]] != roots[ranks[right]]
        left, right = ranks[left[apart]], ranks[right[apart]]
        candidates += len(left)
        for start in range(0, len(left), PAIR_BATCH):
            chunk = slice(start, start + PAIR_BATCH)
            agree = signature[order[left[chunk]]] == signature[order[right[chunk]]]
            accepted = np.count_nonzero(agree, axis=1) >= needed
            merged += int(accepted.sum())
            clusters.union(left[chunk][accepted], right[chunk][accepted])
    return {"candidate_pairs": candidates, "merged_pairs": merged}


def _stats(
    part: np.ndarray,
    sizes: np.ndarray,
    removed: np.ndarray,
    near: np.ndarray,
    roots: np.ndarray,
    lsh: dict[str, int],
    signature_paths: list,
) -> dict[str, Any]:
    """Document and byte counts (in total and per part), removals by reason, cluster sizes."""
    flow = _GroupFlow.count(part, len(signature_paths), sizes, removed, near)
    sizes_of_clusters = np.bincount(roots)
    sizes_of_clusters = sizes_of_clusters[sizes_of_clusters > 1]
    histogram = np.unique(sizes_of_clusters, return_counts=True)
    return {
        "documents_in": int(flow.docs_in.sum()),
        "bytes_in": int(flow.bytes_in.sum()),
        "documents_out": int(flow.docs_out.sum()),
        "bytes_out": int(flow.bytes_out.sum()),
        "removed": {
            EXACT: {"documents": int(flow.exact_docs.sum()), "bytes": int(flow.exact_bytes.sum())},
            NEAR: {"documents": int(flow.near_docs.sum()), "bytes": int(flow.near_bytes.sum())},
        },
        "clusters": {
            "count": len(sizes_of_clusters),
            "documents": int(sizes_of_clusters.sum()),
            "largest": int(sizes_of_clusters.max(initial=0)),
            "sizes": {str(size): int(count) for size, count in zip(*histogram, strict=True)},
        },
        "lsh": lsh,
        "parts": [
            {"part": index, "signatures": str(path), **flow.row(index)}
            for index, path in enumerate(signature_paths)
        ],
    }


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
