"""One cleaned part's dedup index: what the signatures job writes, laid out for the bucket jobs.

A folder per part (`results/dedup/signatures/part-{i}/`), every array raw little-endian and
read memory-mapped, so that a bucket job reads only its hash range of each lane and the join
only the records of the documents that have a duplicate:

- `part.json`: the counts (documents, bytes, and both per `corpus.sources` name), the
  hashing settings and the order of the corpus names that `documents.bin` indexes;
- `documents.bin`: a DOCUMENT record per document, in file order: the hash of its normalised
  text (`exact`), a hash of its source, its size in bytes and its corpus name's index;
- `signatures.bin`: the MinHash signature of each document (documents × num_perm uint32);
- `exact_keys.bin`, `exact_docs.bin`: the exact lane, the first 64 bits of every document's
  text hash, sorted, and the document each belongs to;
- `band_keys.bin`, `band_docs.bin`: one lane per LSH band (bands × documents with shingles),
  each the band's 64-bit keys sorted and their documents.

A lane's keys are uniform 64-bit hashes, so a range of key values holds its share of them.
"""

from __future__ import annotations

import hashlib
import logging
import mmap
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from helox.common.io import atomic_path, iter_jsonl, read_json, write_json
from helox.common.progress import ProgressBar
from helox.data.corpus import DEFAULT_SOURCE
from helox.data.dedup import DedupConfig
from helox.data.minhash import MinHasher, band_keys

log = logging.getLogger(__name__)

DOCUMENT = np.dtype(
    [("exact", "<u8", (2,)), ("source", "<u8"), ("bytes", "<i8"), ("corpus", "<i4")]
)
# The lane of exact duplicates; LSH bands are lanes 0 … bands − 1.
EXACT_LANE = -1
# 2^64: one past the largest key of a lane.
KEY_SPACE = 1 << 64
# Characters of text hashed together in one numpy batch when signing a part.
BATCH_CHARS = 1 << 18


def text_key(text: str, lowercase: bool) -> bytes:
    """The hash two documents share when they differ only in case (if asked) and whitespace."""
    folded = text.casefold() if lowercase else text
    normalized = " ".join(folded.split())
    return hashlib.blake2b(normalized.encode("utf-8"), digest_size=16).digest()


def source_key(source: str) -> bytes:
    return hashlib.blake2b(source.encode("utf-8"), digest_size=8).digest()


@dataclass(frozen=True)
class IndexSettings:
    """What a part's index depends on: the MinHash settings and the number of LSH bands
    (num_perm and bands 0 when near-dedup is off). Not the threshold, which only the bucket
    jobs read."""

    lowercase: bool
    ngram: int
    num_perm: int
    seed: int
    bands: int

    @classmethod
    def of(cls, config: DedupConfig) -> IndexSettings:
        near = config.near
        on = near.enabled
        return cls(
            config.lowercase,
            near.ngram,
            near.num_perm if on else 0,
            near.seed,
            near.bands if on else 0,
        )

    @cached_property
    def hasher(self) -> MinHasher:
        return MinHasher(self.num_perm, self.ngram, self.seed, self.lowercase)


class _Batch:
    """Documents of one part read since the last batch was written."""

    def __init__(self, lowercase: bool):
        self.lowercase = lowercase
        self.texts: list[str] = []
        self.keys: list[bytes] = []
        self.corpus: list[int] = []
        self.chars = 0

    def add(self, text: str, source: str, corpus: int) -> None:
        self.texts.append(text)
        self.keys.append(text_key(text, self.lowercase) + source_key(source))
        self.corpus.append(corpus)
        self.chars += len(text)

    def records(self) -> np.ndarray:
        keys = np.frombuffer(b"".join(self.keys), dtype="<u8").reshape(-1, 3)
        records = np.empty(len(self.texts), dtype=DOCUMENT)
        records["exact"], records["source"] = keys[:, :2], keys[:, 2]
        records["bytes"] = [len(text.encode("utf-8")) for text in self.texts]
        records["corpus"] = self.corpus
        return records


class _IndexWriter:
    """Writes one part's index into `folder`: records and signatures a batch at a time, the
    lanes sorted and part.json at the end. Holds the lanes' keys until then (about 270
    bytes a document at 32 bands)."""

    def __init__(self, folder: Path, settings: IndexSettings):
        self.folder, self.settings = folder, settings
        self.rows = settings.num_perm // settings.bands if settings.bands else 0
        self.documents = open(folder / "documents.bin", "wb")  # noqa: SIM115 - closed in __exit__
        self.signatures = open(folder / "signatures.bin", "wb")  # noqa: SIM115 - likewise
        self.corpus_numbers: dict[str, int] = {}
        self.corpus: dict[str, dict[str, int]] = {}
        self.exact_keys: list[np.ndarray] = []
        self.band_keys: list[np.ndarray] = []
        self.band_docs: list[np.ndarray] = []
        self.count = self.bytes = 0

    def __enter__(self) -> _IndexWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.documents.close()
        self.signatures.close()

    def corpus_number(self, name: str) -> int:
        return self.corpus_numbers.setdefault(name, len(self.corpus_numbers))

    def write(self, batch: _Batch) -> None:
        records = batch.records()
        records.tofile(self.documents)
        self.exact_keys.append(records["exact"][:, 0].copy())
        signature, shingles = self.settings.hasher.signatures(batch.texts)
        signature.tofile(self.signatures)
        signed = np.flatnonzero(shingles > 0)
        rows = self.rows
        lanes = [
            band_keys(signature[signed, band * rows : (band + 1) * rows])
            for band in range(self.settings.bands)
        ]
        self.band_keys.append(np.array(lanes, dtype="<u8").reshape(len(lanes), len(signed)))
        self.band_docs.append((signed + self.count).astype("<u4"))
        names = list(self.corpus_numbers)
        counts = np.bincount(records["corpus"], minlength=len(names))
        sizes = np.bincount(records["corpus"], records["bytes"], minlength=len(names))
        for number in np.flatnonzero(counts):
            row = self.corpus.setdefault(names[number], {"documents": 0, "bytes": 0})
            row["documents"] += int(counts[number])
            row["bytes"] += int(sizes[number])
        self.count += len(records)
        self.bytes += int(records["bytes"].sum())

    def finish(self) -> None:
        """Sort each lane by key (documents in file order among equal keys), write the lanes
        and part.json."""
        exact = np.concatenate(self.exact_keys)
        order = np.argsort(exact, kind="stable")
        exact[order].tofile(self.folder / "exact_keys.bin")
        order.astype("<u4").tofile(self.folder / "exact_docs.bin")
        lanes, documents = np.concatenate(self.band_keys, axis=1), np.concatenate(self.band_docs)
        with (
            open(self.folder / "band_keys.bin", "wb") as keys,
            open(self.folder / "band_docs.bin", "wb") as docs,
        ):
            for lane in lanes:
                order = np.argsort(lane, kind="stable")
                lane[order].tofile(keys)
                documents[order].tofile(docs)
        settings = self.settings
        meta = {"documents": self.count, "bytes": self.bytes, "near_documents": len(documents)}
        meta |= {"num_perm": settings.num_perm, "bands": settings.bands, "rows": self.rows}
        meta |= {"ngram": settings.ngram, "seed": settings.seed, "lowercase": settings.lowercase}
        meta |= {"corpus_names": list(self.corpus_numbers), "corpus": self.corpus}
        write_json(self.folder / "part.json", meta)


def sign_part(
    input_path: str | os.PathLike, output: str | os.PathLike, settings: IndexSettings
) -> int:
    """Write the dedup index of one cleaned part (a folder, see the module); return how many
    documents it holds."""
    signed = 0
    bar = ProgressBar(
        f"signing {input_path}",
        os.path.getsize(input_path),
        "MB",
        scale=1e6,
        note=lambda: f"{signed:,} docs",
    )
    with atomic_path(output) as folder:
        folder.mkdir()
        with _IndexWriter(folder, settings) as index:
            batch = _Batch(settings.lowercase)
            for record in iter_jsonl(input_path, on_read=bar.update):
                corpus = index.corpus_number(record.get("corpus") or DEFAULT_SOURCE)
                batch.add(record["text"], record.get("source", ""), corpus)
                if batch.chars >= BATCH_CHARS:
                    index.write(batch)
                    signed, batch = index.count, _Batch(settings.lowercase)
            index.write(batch)
            bar.close()
            index.finish()
    log.info("signed %d documents of %s into %s", index.count, input_path, output)
    return index.count


def _mapped(path: Path, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
    """The raw array at `path`, memory-mapped read-only until the array is dropped (an empty
    array when it holds nothing)."""
    if not all(shape):
        return np.empty(shape, dtype=dtype)
    with open(path, "rb") as handle:
        mapping = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    return np.frombuffer(mapping, dtype=dtype).reshape(shape)


@dataclass(frozen=True)
class PartIndex:
    """A part's dedup index, read lazily: each call maps the arrays it needs and lets them go,
    so that only the pages a call touched were ever resident."""

    folder: Path
    meta: dict[str, Any]

    @classmethod
    def open(cls, folder: str | os.PathLike) -> PartIndex:
        folder = Path(folder)
        if not (folder / "part.json").is_file():
            raise FileNotFoundError(
                f"{folder} holds no dedup index (part.json): rerun the dedup_signatures rule"
            )
        return cls(folder, read_json(folder / "part.json"))

    @property
    def documents(self) -> int:
        return self.meta["documents"]

    def _lane(self, lane: int) -> tuple[np.ndarray, np.ndarray]:
        """The sorted keys of `lane` and their documents, mapped."""
        if lane == EXACT_LANE:
            shape: tuple[int, ...] = (self.documents,)
            names = ("exact_keys.bin", "exact_docs.bin")
        else:
            shape = (self.meta["bands"], self.meta["near_documents"])
            names = ("band_keys.bin", "band_docs.bin")
        keys = _mapped(self.folder / names[0], "<u8", shape)
        docs = _mapped(self.folder / names[1], "<u4", shape)
        return (keys, docs) if lane == EXACT_LANE else (keys[lane], docs[lane])

    def positions(self, lane: int, bounds: list[int]) -> np.ndarray:
        """Where each key bound (0 … KEY_SPACE) falls among the sorted keys of `lane`."""
        keys = self._lane(lane)[0]
        capped = np.array([min(bound, KEY_SPACE - 1) for bound in bounds], dtype=np.uint64)
        found = np.searchsorted(keys, capped)
        found[[bound == KEY_SPACE for bound in bounds]] = len(keys)
        return found

    def lane_slice(self, lane: int, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        """Keys and documents `start` to `end` of `lane`, copied out of the mapping."""
        keys, docs = self._lane(lane)
        return np.array(keys[start:end]), np.array(docs[start:end], dtype=np.int64)

    def records(self, docs: np.ndarray) -> np.ndarray:
        """The DOCUMENT records of documents `docs` (sorted indices read fastest)."""
        return _mapped(self.folder / "documents.bin", DOCUMENT, (self.documents,))[docs]

    def signatures(self, docs: np.ndarray) -> np.ndarray:
        shape = (self.documents, self.meta["num_perm"])
        return _mapped(self.folder / "signatures.bin", "<u4", shape)[docs]


def rank_keys(records: np.ndarray, part_of: np.ndarray, docs: np.ndarray) -> tuple:
    """The keys, least significant first (for np.lexsort), that rank documents for keeping:
    the longest first, then the smallest text hash, source hash, part and line."""
    exact = records["exact"]
    return (docs, part_of, records["source"], exact[:, 1], exact[:, 0], -records["bytes"])


def open_parts(folders: list[str | os.PathLike]) -> tuple[list[PartIndex], np.ndarray]:
    """The index of every part, and where each part's documents start in the corpus's order."""
    parts = [PartIndex.open(folder) for folder in folders]
    counts = np.array([part.documents for part in parts], dtype=np.int64)
    return parts, np.cumsum(counts) - counts


def gather(parts: list[PartIndex], part_of: np.ndarray, docs: np.ndarray, read: str) -> np.ndarray:
    """`read` ("records" or "signatures") of each document (`part_of`, `docs`), in their order,
    reading each part once with its documents sorted, straight into the result."""
    order = np.lexsort((docs, part_of))
    ends = np.searchsorted(part_of[order], np.arange(len(parts)), side="right")
    result = getattr(parts[0], read)(docs[:0])  # empty, of the type and width read
    start = 0
    for part, end in enumerate(ends):
        if end > start:
            chosen = order[start:end]
            rows = getattr(parts[part], read)(docs[chosen])
            if not len(result):
                result = np.empty((len(docs), *rows.shape[1:]), dtype=rows.dtype)
            result[chosen] = rows
        start = end
    return result
