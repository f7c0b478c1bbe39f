"""Token shards: documents → token ids → Arrow IPC files per split, plus a manifest.

Layout of one shard file: Arrow IPC *file* format, uncompressed (so readers can
memory-map it without a copy), one column `tokens` of type list<uint16> (list<uint32>
when the vocabulary exceeds 65,536), one row per document, each document's ids
followed by the tokenizer's EOS id (and preceded by its BOS where the model's convention
adds one, as Llama 3's does). The flattened values of a split are therefore the packed
training stream, with documents separated by EOS.

Every document is tokenized once. Shards job i writes `train/<source>/part-i.arrow` for each
source of `corpus.sources` (the one source of `corpus.raw_dir` is named `raw`), so training
can draw from each source by its weight (`helox.tokens.mixture`), and `val/part-i.arrow` and
`test/part-i.arrow` with every source's documents as they come (natural proportions). No
weight is read here: a weight edit leaves the shards as they are.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from helox.common.io import (
    atomic_path,
    finish_atomic,
    iter_jsonl,
    name_output,
    read_json,
    sha256_file,
    sha256_files,
    write_json,
)
from helox.common.progress import ProgressBar
from helox.data.corpus import DEFAULT_SOURCE
from helox.tokens.interface import Tokenizer
from helox.tokens.vocab import TokenizerSource, load_tokenizer

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
ENCODE_BATCH_BYTES = 1 << 20

StrPath = str | os.PathLike  # a file or folder, as a string or a path


@dataclass
class ShardsConfig:
    parts: int = 4  # scatter: one shards job per part, each tokenizing whole dedup parts
    train_split: float = 0.98
    val_split: float = 0.01
    test_split: float = 0.01


class EmptySplitError(ValueError):
    """A split that training needs holds no tokens: the corpus has too few documents."""


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned integer type that holds every id of the vocabulary."""
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


def assign_split(text: str, seed: int, config: ShardsConfig) -> str:
    """Pick a split for a document from a seeded hash of its text (stable across runs)."""
    digest = hashlib.blake2b(
        text.encode("utf-8", "surrogatepass"), digest_size=8, key=seed.to_bytes(8, "little")
    )
    position = int.from_bytes(digest.digest(), "little") / 2**64
    if position < config.train_split:
        return "train"
    if position < config.train_split + config.val_split:
        return "val"
    return "test"


def batched(records: Iterator[dict], max_bytes: int) -> Iterator[list[dict]]:
    """Group records into batches of about `max_bytes` of text, so memory stays flat."""
    batch: list[dict] = []
    size = 0
    for record in records:
        batch.append(record)
        size += len(record["text"])
        if size >= max_bytes:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


class ShardWriter:
    """Stream documents of token ids into one Arrow IPC file, atomically."""

    def __init__(self, path: StrPath, dtype: np.dtype):
        self.path = Path(path)
        self.dtype = dtype
        self.schema = pa.schema([("tokens", pa.list_(pa.from_numpy_dtype(dtype)))])
        self._context = atomic_path(path)
        self._writer = pa.ipc.new_file(str(self._context.__enter__()), self.schema)
        self.documents = 0
        self.tokens = 0
        self.bytes = 0

    def write(self, documents: list[list[int]], text_bytes: int) -> None:
        if not documents:
            return
        lengths = np.fromiter((len(d) for d in documents), dtype=np.int64, count=len(documents))
        offsets = np.zeros(len(documents) + 1, dtype=np.int32)
        np.cumsum(lengths, out=offsets[1:])
        values = np.concatenate([np.asarray(d, dtype=self.dtype) for d in documents])
        column = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))
        try:
            self._writer.write_batch(pa.record_batch([column], schema=self.schema))
        except OSError as error:
            name_output(error, self.path)
            raise
        self.documents += len(documents)
        self.tokens += int(offsets[-1])
        self.bytes += text_bytes

    def close(self, success: bool = True) -> None:
        """Rename the finished file onto its name; without `success`, delete it instead."""
        finish_atomic(self._context, self._writer.close, success)

    def stats(self) -> dict:
        return {"documents": self.documents, "tokens": self.tokens, "bytes": self.bytes}


def summed(cells: Sequence[Mapping[str, int]]) -> dict[str, int]:
    """Documents, tokens and bytes added up over `cells`."""
    return {key: sum(cell[key] for cell in cells) for key in ("documents", "tokens", "bytes")}


class SourceTally:
    """Documents, tokens and bytes per `corpus.sources` name and split."""

    def __init__(self) -> None:
        self.counts: dict[str, dict[str, dict[str, int]]] = {}

    def add(self, corpus: str, split: str, tokens: int, size: int) -> None:
        """Count one document of `tokens` tokens and `size` bytes."""
        self.add_counts(corpus, split, {"documents": 1, "tokens": tokens, "bytes": size})

    def add_counts(self, corpus: str, split: str, counts: Mapping[str, int]) -> None:
        row = self.counts.setdefault(corpus, {})
        cell = row.setdefault(split, {"documents": 0, "tokens": 0, "bytes": 0})
        for key in cell:
            cell[key] += counts[key]

    def to_dict(self) -> dict[str, dict[str, dict[str, int]]]:
        empty = {"documents": 0, "tokens": 0, "bytes": 0}
        return {
            name: {split: dict(row.get(split, empty)) for split in SPLITS}
            for name, row in sorted(self.counts.items())
        }


@dataclass
class PartPaths:
    """What one shards job writes: each source's train shard, the val and test shards (every
    source's documents), and the part's stats."""

    train: dict[str, Path]  # by source name
    val: Path
    test: Path
    stats: Path

    @classmethod
    def of(cls, shards_dir: StrPath, part: int, sources: Sequence[str]) -> PartPaths:
        """The layout the shards rule writes (`workflow/rules/shards.smk`)."""
        root = Path(shards_dir)
        return cls(
            {name: root / "train" / name / f"part-{part}.arrow" for name in sources},
            root / "val" / f"part-{part}.arrow",
            root / "test" / f"part-{part}.arrow",
            root / "stats" / f"part-{part}.json",
        )

    def shards(self) -> dict[str, list[Path]]:
        """The shard files of each split."""
        return {"train": list(self.train.values()), "val": [self.val], "test": [self.test]}


def encoded_batches(
    input_paths: list[StrPath], tokenizer: Tokenizer, threads: int, on_read=None
) -> Iterator[list[tuple[dict, list[int]]]]:
    """(record, the ids training sees of it) of every document of the inputs, a batch of
    about a MB at a time."""
    records = (record for path in input_paths for record in iter_jsonl(path, on_read))
    return encoded_records(records, tokenizer, threads)


def encoded_records(
    records: Iterator[dict], tokenizer: Tokenizer, threads: int
) -> Iterator[list[tuple[dict, list[int]]]]:
    """(record, the ids training sees of it) of each of `records`, a batch of about a MB at a
    time."""
    for batch in batched(records, ENCODE_BATCH_BYTES):
        encoded = tokenizer.encode_batch([record["text"] for record in batch], threads)
        yield [(r, tokenizer.document_ids(ids)) for r, ids in zip(batch, encoded, strict=True)]


def tokenize_part(
    input_paths: list[StrPath],
    tokenizer: TokenizerSource,
    outputs: PartPaths,
    config: ShardsConfig,
    seed: int,
    threads: int = 1,
) -> dict:
    """Tokenize deduplicated parts into `outputs`' shards, and write their stats."""
    tokenizer = load_tokenizer(tokenizer)
    dtype = token_dtype(tokenizer.vocab_size)
    tally = SourceTally()
    train = {name: ShardWriter(path, dtype) for name, path in outputs.train.items()}
    writers = [*train.values(), *(ShardWriter(p, dtype) for p in (outputs.val, outputs.test))]
    by_split = {"val": writers[-2], "test": writers[-1]}
    bar = ProgressBar(
        f"tokenizing {', '.join(map(str, input_paths))}",
        sum(os.path.getsize(path) for path in input_paths),
        "MB",
        scale=1e6,
        note=lambda: f"{sum(writer.tokens for writer in writers):,} tokens",
    )
    try:
        for batch in encoded_batches(input_paths, tokenizer, threads, bar.update):
            pending: dict[ShardWriter, tuple[list[list[int]], list[int]]] = {}
            for record, ids in batch:
                text = record["text"]
                corpus = record.get("corpus") or DEFAULT_SOURCE
                split = assign_split(text, seed, config)
                if split == "train" and corpus not in train:
                    raise ValueError(
                        f"{', '.join(map(str, input_paths))}: a document of corpus source "
                        f"{corpus!r}, which is not one of the sources {sorted(train)}"
                    )
                size = len(text.encode("utf-8"))
                tally.add(corpus, split, len(ids), size)
                documents, sizes = pending.setdefault(
                    train[corpus] if split == "train" else by_split[split], ([], [])
                )
                documents.append(ids)
                sizes.append(size)
            for writer, (documents, sizes) in pending.items():
                writer.write(documents, sum(sizes))
    except BaseException:
        for writer in writers:
            writer.close(success=False)
        raise
    for writer in writers:
        writer.close()
    bar.close()
    splits = {split: writer.stats() for split, writer in by_split.items()}
    splits["train"] = summed([writer.stats() for writer in train.values()])
    stats = {
        "inputs": [{"path": str(p), "sha256": sha256_file(p)} for p in input_paths],
        "token_dtype": dtype.name,
        "splits": {split: splits[split] for split in SPLITS},
        "corpus": tally.to_dict(),
    }
    write_json(outputs.stats, stats)
    log.info("%s: %s", [str(p) for p in input_paths], stats["splits"])
    return stats


def inputs_of_part(input_paths: list, part: int, parts: int) -> list:
    """The deduplicated parts that shards job `part` of `parts` tokenizes."""
    return input_paths[part::parts]


def write_manifest(
    shards_dir: StrPath,
    part_stats_paths: list[StrPath],
    shard_paths: dict[str, list[StrPath]],
    tokenizer: TokenizerSource,
    manifest_path: StrPath,
) -> dict:
    """Gather the parts' stats into `manifest.json`: counts per split and the lineage hashes.

    `source_sha256` is the SHA-256 over the SHA-256s of the deduplicated files, by path;
    `tokenizer_sha256` the tokenizer's (helox.tokens.interface.Tokenizer.sha256);
    `shards_sha256` that of the shards.
    `sources` holds, per `corpus.sources` name, its `documents`, `tokens` and `bytes` per
    split and its `train_files` (the train split's files are every source's).
    """
    shards_dir = Path(shards_dir)
    parts = [read_json(p) for p in part_stats_paths]
    inputs = [item for part in parts for item in part["inputs"]]
    tokenizer = load_tokenizer(tokenizer)
    splits = {
        split: {
            "files": [str(Path(p).relative_to(shards_dir)) for p in shard_paths[split]],
            **summed([part["splits"][split] for part in parts]),
        }
        for split in SPLITS
    }
    check_splits_hold_tokens(splits)
    manifest = {
        "splits": splits,
        **tokenizer_fields(tokenizer),
        **source_fields(inputs),
        "shards_sha256": sha256_files(p for split in SPLITS for p in shard_paths[split]),
        "sources": source_rows(parts, splits["train"]["files"]),
    }
    write_json(manifest_path, manifest)
    return manifest


def tokenizer_fields(tokenizer: Tokenizer) -> dict:
    """What a manifest records of the tokenizer its shards hold the ids of."""
    return {
        "vocab_size": tokenizer.vocab_size,
        "token_dtype": token_dtype(tokenizer.vocab_size).name,
        "eos_id": tokenizer.eos,
        "bos_id": tokenizer.bos,
        "adds_bos": tokenizer.adds_bos,
        "pad_id": tokenizer.pad,
        "tokenizer_kind": tokenizer.kind,
        "tokenizer_sha256": tokenizer.sha256,
    }


def source_fields(inputs: list[dict]) -> dict:
    """The manifest's lineage of the deduplicated files (`{"path", "sha256"}` each) it read."""
    ordered = sorted(inputs, key=lambda i: i["path"])
    return {
        "source_sha256": hashlib.sha256("".join(i["sha256"] for i in ordered).encode()).hexdigest(),
        "source_files": ordered,
    }


def check_splits_hold_tokens(splits: Mapping[str, Mapping[str, int]]) -> None:
    """Raise EmptySplitError if train or val holds no tokens (pretraining needs both);
    warn when test is empty."""
    documents = sum(splits[split]["documents"] for split in SPLITS)
    for split in SPLITS:
        if splits[split]["tokens"]:
            continue
        message = (
            f"the {split} split holds no documents: of the {documents} left after cleaning "
            f"and deduplication, none fell in it (shards.{split}_split, by a hash of each "
            "document's text); give the corpus more documents (a long text can be split "
            f"into several files) or raise shards.{split}_split"
        )
        if split == "test":
            log.warning("%s; evaluations on the test split will have nothing to score", message)
        else:
            raise EmptySplitError(message)


def source_rows(parts: list[dict], train_files: list[str]) -> dict[str, dict]:
    """The manifest's `sources`: each source's counts summed over the parts, and its train
    files (`train/<source>/part-i.arrow`)."""
    totals = SourceTally()
    for part in parts:
        for name, row in part.get("corpus", {}).items():
            for split, cell in row.items():
                totals.add_counts(name, split, cell)
    counted = totals.to_dict()
    names = sorted(set(counted) | {Path(path).parent.name for path in train_files})
    empty = {split: {"documents": 0, "tokens": 0, "bytes": 0} for split in SPLITS}
    return {
        name: {
            **{
                key: {split: cell[key] for split, cell in counted.get(name, empty).items()}
                for key in ("documents", "tokens", "bytes")
            },
            "train_files": [path for path in train_files if Path(path).parent.name == name],
        }
        for name in names
    }


def build_dataset_shards(
    input_paths: list[StrPath],
    tokenizer: TokenizerSource,
    shards_dir: StrPath,
    config: ShardsConfig,
    seed: int,
    threads: int = 1,
    sources: Sequence[str] = (DEFAULT_SOURCE,),
) -> dict:
    """The whole shards stage in one call (what the rules do as a scatter and a gather), for
    documents of the `corpus.sources` named `sources`."""
    shards_dir = Path(shards_dir)
    tokenizer = load_tokenizer(tokenizer)
    shard_paths: dict[str, list[Path]] = {split: [] for split in SPLITS}
    stats_paths = []
    for part in range(min(config.parts, len(input_paths))):
        outputs = PartPaths.of(shards_dir, part, sources)
        part_inputs = inputs_of_part(list(input_paths), part, config.parts)
        tokenize_part(part_inputs, tokenizer, outputs, config, seed, threads)
        for split, paths in outputs.shards().items():
            shard_paths[split].extend(paths)
        stats_paths.append(outputs.stats)
    return write_manifest(
        shards_dir, stats_paths, shard_paths, tokenizer, shards_dir / "manifest.json"
    )


def manifest_of_tokenizer(
    manifest_path: StrPath, tokenizer: TokenizerSource, consequence: str
) -> dict:
    """The manifest, once its shards are known to be tokenized with `tokenizer` (its
    vocabulary file and the ids around each document; chat markers and a chat template added
    by SFT do not count); else a ValueError that says what reading them with another
    tokenizer would mean."""
    manifest = read_json(manifest_path)
    tokenizer = load_tokenizer(tokenizer)
    if manifest.get("tokenizer_sha256") != tokenizer.sha256:
        raise ValueError(
            f"{manifest_path} was tokenized with another tokenizer than {tokenizer.model_file}; "
            f"{consequence}"
        )
    return manifest


def read_shard(path: StrPath) -> pa.Table:
    """Memory-map one shard file (no copy of its tokens into RAM)."""
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_file(source).read_all()
