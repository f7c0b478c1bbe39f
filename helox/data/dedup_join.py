"""The dedup join: the bucket jobs' pairs joined into clusters, one document kept in each.

Only documents that appear in a pair are held: their global ids, their records (read from the
parts' indexes) and a union-find over them, so memory grows with the documents that have a
duplicate, not with the corpus. Each cluster keeps its first document in rank order: the
longest, then the smallest text hash, then the smallest source hash, then part and line. The
choice depends only on the documents, never on how the corpus was split into parts or the key
space into bucket jobs. The counts in and out of each part and source come from the parts'
`part.json`, so no step reads every document's record.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from helox.common.io import atomic_path, write_json
from helox.data.dedup import EXACT, NEAR, EmptyCorpusError, empty_corpus_message
from helox.data.dedup_index import PartIndex, gather, open_parts, rank_keys
from helox.data.dedup_pairs import COUNT_NAMES, read_counts, read_pairs
from helox.data.minhash import UnionFind

log = logging.getLogger(__name__)

# Pairs merged into the clusters at once, at least: as many as there are linked documents, so
# that merging costs a few passes over them, and the batch stays in proportion to them.
UNION_BATCH = 1 << 16


def join_pairs(
    index_folders: list[str | os.PathLike],
    pair_paths: list[str | os.PathLike],
    removed_outputs: list[str | os.PathLike],
    stats_output: str | os.PathLike,
    clean_stats: list[str | os.PathLike] | None = None,
) -> dict[str, Any]:
    """Cluster the pairs; write each part's removed documents and the stats; return the stats.

    `removed_outputs[i]` (`.npz`) lists part i's removed documents by `index` (their line in
    the part, ascending), the document kept in each one's place (`keep_part`, `keep_index`),
    whether it was only a near duplicate (`near`) and the part's document count (`documents`).
    Raises EmptyCorpusError, citing the clean stats files when given, if no part holds a document.
    """
    parts, offsets = open_parts(index_folders)
    if len(removed_outputs) != len(parts):
        raise ValueError(f"{len(parts)} parts but {len(removed_outputs)} outputs for them")
    documents = np.array([part.documents for part in parts], dtype=np.int64)
    if not documents.sum():
        raise EmptyCorpusError(empty_corpus_message(len(parts), clean_stats))
    linked = _linked_documents(pair_paths)
    part_of = np.searchsorted(offsets, linked, side="right") - 1
    index = linked - offsets[part_of]
    records = gather(parts, part_of, index, "records")
    exact = records["exact"]
    order = np.lexsort(rank_keys(records, part_of, index))
    roots = _cluster_roots(pair_paths, linked, order)
    removed_ranks = np.flatnonzero(roots != np.arange(len(roots)))
    removed, kept_for = order[removed_ranks], order[roots[removed_ranks]]
    near = np.any(exact[removed] != exact[kept_for], axis=1)
    by_line = np.lexsort((index[removed], part_of[removed]))
    removed, kept_for, near = removed[by_line], kept_for[by_line], near[by_line]
    ends = np.searchsorted(part_of[removed], np.arange(len(parts)), side="right")
    for part, (start, end) in enumerate(zip(np.concatenate([[0], ends[:-1]]), ends, strict=True)):
        chosen, keeper = removed[start:end], kept_for[start:end]
        with atomic_path(removed_outputs[part]) as tmp, open(tmp, "wb") as handle:
            np.savez(
                handle,
                index=index[chosen],
                keep_part=part_of[keeper],
                keep_index=index[keeper],
                near=near[start:end],
                documents=documents[part],
            )
    removed_docs = _Removed(part_of[removed], records[removed], near)
    stats = _stats(parts, removed_docs, roots, pair_paths)
    write_json(stats_output, stats)
    log.info(
        "dedup: kept %d of %d documents across %d parts (%d exact, %d near duplicates, "
        "%d clusters, largest %d; %d documents linked by pairs)",
        stats["documents_out"],
        stats["documents_in"],
        len(parts),
        stats["removed"][EXACT]["documents"],
        stats["removed"][NEAR]["documents"],
        stats["clusters"]["count"],
        stats["clusters"]["largest"],
        len(linked),
    )
    return stats


def _cluster_roots(
    pair_paths: list[str | os.PathLike], linked: np.ndarray, order: np.ndarray
) -> np.ndarray:
    """Each linked document's cluster, as the rank of its first document in `order` (the
    ranking of the `linked` ids), indexed by rank."""
    rank_of = np.empty_like(order)
    rank_of[order] = np.arange(len(order))
    clusters = UnionFind.of_size(len(order))
    for left, right in _pair_batches(pair_paths, len(linked)):
        clusters.union(
            rank_of[np.searchsorted(linked, left)], rank_of[np.searchsorted(linked, right)]
        )
    return clusters.roots()


def _linked_documents(pair_paths: list[str | os.PathLike]) -> np.ndarray:
    """The sorted global ids of every document in a pair, gathered a chunk at a time."""
    linked = np.empty(0, dtype=np.int64)
    pending: list[np.ndarray] = []
    for path in pair_paths:
        for left, right in read_pairs(path):
            pending.append(np.unique(np.concatenate([left, right])))
            if sum(map(len, pending)) > max(len(linked), UNION_BATCH):
                linked = np.unique(np.concatenate([linked, *pending]))
                pending.clear()
    return np.unique(np.concatenate([linked, *pending]))


def _pair_batches(
    pair_paths: list[str | os.PathLike], linked: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The pairs of every bucket job, in batches of at least UNION_BATCH (or `linked`) pairs,
    so that merging costs a few passes over the linked documents."""
    batch: list[tuple[np.ndarray, np.ndarray]] = []
    size = 0
    for path in pair_paths:
        for left, right in read_pairs(path):
            batch.append((left, right))
            size += len(left)
            if size >= max(UNION_BATCH, linked):
                yield np.concatenate([b[0] for b in batch]), np.concatenate([b[1] for b in batch])
                batch, size = [], 0
    if batch:
        yield np.concatenate([b[0] for b in batch]), np.concatenate([b[1] for b in batch])


@dataclass
class _Removed:
    """The removed documents: each one's part, record and whether it was only a near copy."""

    part_of: np.ndarray
    records: np.ndarray
    near: np.ndarray


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
        docs_in: np.ndarray,
        bytes_in: np.ndarray,
        group_of_removed: np.ndarray,
        removed: _Removed,
    ) -> _GroupFlow:
        """The flow of groups that took in `docs_in` and `bytes_in`, the removed documents
        each counted in its group (`group_of_removed`) as an exact or, where `near`, a near
        copy."""
        sizes = removed.records["bytes"]

        def tally(selected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            groups = group_of_removed[selected]
            docs = np.bincount(groups, minlength=len(docs_in))
            return docs, np.bincount(groups, weights=sizes[selected], minlength=len(docs_in))

        exact_docs, exact_bytes = tally(~removed.near)
        near_docs, near_bytes = tally(removed.near)
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


def _corpus_flows(parts: list[PartIndex], removed: _Removed) -> dict[str, dict[str, int]]:
    """Per `corpus.sources` name: documents and bytes in and out, duplicates removed.

    Clusters span sources: a document removed as a copy of another source's is counted
    under its own source.
    """
    names: dict[str, int] = {}
    local_names = []
    for part in parts:
        local_names.append([names.setdefault(n, len(names)) for n in part.meta["corpus_names"]])
    docs_in, bytes_in = np.zeros(len(names), dtype=np.int64), np.zeros(len(names), dtype=np.int64)
    for part in parts:
        for name, counts in part.meta["corpus"].items():
            docs_in[names[name]] += counts["documents"]
            bytes_in[names[name]] += counts["bytes"]
    starts = np.cumsum([0, *map(len, local_names)])[:-1]
    table = np.array([number for local in local_names for number in local], dtype=np.int64)
    group = table[starts[removed.part_of] + removed.records["corpus"]]
    flow = _GroupFlow.count(docs_in, bytes_in, group, removed)
    return {name: flow.row(number) for name, number in names.items()}


def _stats(
    parts: list[PartIndex], removed: _Removed, roots: np.ndarray, pair_paths: list
) -> dict[str, Any]:
    """Document and byte counts (in total, per part and per source), removals by reason,
    cluster sizes, and the pairs the bucket jobs found."""
    docs_in = np.array([part.documents for part in parts], dtype=np.int64)
    bytes_in = np.array([part.meta["bytes"] for part in parts], dtype=np.int64)
    flow = _GroupFlow.count(docs_in, bytes_in, removed.part_of, removed)
    sizes_of_clusters = np.bincount(roots)
    sizes_of_clusters = sizes_of_clusters[sizes_of_clusters > 1]
    histogram = np.unique(sizes_of_clusters, return_counts=True)
    pairs = dict.fromkeys(COUNT_NAMES, 0)
    for path in pair_paths:
        for name, count in read_counts(path).items():
            pairs[name] += count
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
        "lsh": {**pairs, "bucket_jobs": len(pair_paths)},
        "parts": [
            {"part": number, "signatures": str(part.folder), **flow.row(number)}
            for number, part in enumerate(parts)
        ],
        "corpus": _corpus_flows(parts, removed),
    }
