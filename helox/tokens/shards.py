"""Token shards: documents → token ids → Arrow IPC files per split, plus a manifest.

Layout of one shard file: Arrow IPC *file* format, uncompressed (so readers can
memory-map it without a copy), one column `tokens` of type list<uint16> (list<uint32>
when the vocabulary exceeds 65,536), one row per document, each document's ids
followed by the tokenizer's EOS id (and preceded by its BOS where the model's convention
adds one, as Llama 3's does). The flattened values of a split are therefore the packed
training stream, with documents separated by EOS.

With several `corpus.sources`, the train split is mixed by weight (`helox.tokens.mixture`):
`count_part` first counts each source's tokens per split, and `tokenize_part` writes each
train document as many times as the `Resampler` says (copies side by side; training visits
windows in a shuffled order). Validation and test are written as they come.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator, Mapping
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
from helox.tokens.mixture import Resampler, repeat_factors
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


class SourceTally:
    """Documents, tokens and bytes per `corpus.sources` name and split."""

    def __init__(self) -> None:
        self.counts: dict[str, dict[str, dict[str, int]]] = {}

    def add(self, corpus: str, split: str, tokens: int, size: int, copies: int = 1) -> None:
        """Count `copies` of one document of `tokens` tokens and `size` bytes."""
        self.add_counts(
            corpus, split, {"documents": copies, "tokens": tokens * copies, "bytes": size * copies}
        )

    def add_counts(self, corpus: str, split: str, counts: Mapping[str, int]) -> None:
        row = self.counts.setdefault(corpus, {})
        cell = row.setdefault(split, {"documents": 0, "tokens": 0, "bytes": 0})
        for key in cell:
            cell[key] += counts[key]

    def to_dict(self) -> dict[str, dict[str, dict[str, int]]]:
        empty = {"documents": 0, "tokens": 0, "bytes": 0}
        return {
            name: {split: dict(row.get(split, empty)) for split in (*SPLITS, "natural_train")}
            for name, row in sorted(self.counts.items())
        }


def encoded_batches(
    input_paths: list[StrPath], tokenizer: Tokenizer, threads: int, on_read=None
) -> Iterator[list[tuple[dict, list[int]]]]:
    """(record, the ids training sees of it) of every document of the inputs, a batch of
    about a MB at a time."""
    records = (record for path in input_paths for record in iter_jsonl(path, on_read))
    for batch in batched(records, ENCODE_BATCH_BYTES):
        encoded = tokenizer.encode_batch([record["text"] for record in batch], threads)
        yield [(r, tokenizer.document_ids(ids)) for r, ids in zip(batch, encoded, strict=True)]


def count_part(
    input_paths: list[StrPath],
    tokenizer: TokenizerSource,
    output: StrPath,
    config: ShardsConfig,
    seed: int,
    threads: int = 1,
) -> dict:
    """Count each source's documents, tokens and bytes per split (no shards written)."""
    tokenizer = load_tokenizer(tokenizer)
    tally = SourceTally()
    for batch in encoded_batches(input_paths, tokenizer, threads):
        for record, ids in batch:
            split = assign_split(record["text"], seed, config)
            size = len(record["text"].encode("utf-8"))
            tally.add(record.get("corpus") or DEFAULT_SOURCE, split, len(ids), size)
    counts = {"inputs": [str(path) for path in input_paths], "corpus": tally.to_dict()}
    write_json(output, counts)
    return counts


def mixture_factors(count_paths: list[StrPath], weights: Mapping[str, float]) -> dict[str, float]:
    """The repeat factor of every source, from the counts of all parts and the weights."""
    natural: dict[str, int] = {}
    for path in count_paths:
        for name, row in read_json(path)["corpus"].items():
            natural[name] = natural.get(name, 0) + row["train"]["tokens"]
    return repeat_factors(weights, natural)


def tokenize_part(
    input_paths: list[StrPath],
    tokenizer: TokenizerSource,
    output_paths: dict[str, StrPath],
    stats_path: StrPath,
    config: ShardsConfig,
    seed: int,
    threads: int = 1,
    factors: Mapping[str, float] | None = None,
) -> dict:
    """Tokenize deduplicated parts into one Arrow file per split, and write their stats.

    `factors` (from `mixture_factors`) resamples the train documents of each source.
    """
    tokenizer = load_tokenizer(tokenizer)
    dtype = token_dtype(tokenizer.vocab_size)
    resampler = Resampler(factors or {}, seed)
    tally = SourceTally()
    writers = {split: ShardWriter(output_paths[split], dtype) for split in SPLITS}
    bar = ProgressBar(
        f"tokenizing {', '.join(map(str, input_paths))}",
        sum(os.path.getsize(path) for path in input_paths),
        "MB",
        scale=1e6,
        note=lambda: f"{sum(writer.tokens for writer in writers.values()):,} tokens",
    )
    try:
        for batch in encoded_batches(input_paths, tokenizer, threads, bar.update):
            by_split: dict[str, list[list[int]]] = {split: [] for split in SPLITS}
            bytes_by_split = dict.fromkeys(SPLITS, 0)
            for record, ids in batch:
                text = record["text"]
                corpus = record.get("corpus") or DEFAULT_SOURCE
                split = assign_split(text, seed, config)
                size = len(text.encode("utf-8"))
                copies = 1
                if split == "train":
                    tally.add(corpus, "natural_train", len(ids), size)
                    copies = resampler.copies(corpus, text, len(ids))
                tally.add(corpus, split, len(ids), size, copies)
                by_split[split].extend([ids] * copies)
                bytes_by_split[split] += size * copies
            for split, writer in writers.items():
                writer.write(by_split[split], bytes_by_split[split])
    except BaseException:
        for writer in writers.values():
            writer.close(success=False)
        raise
    for writer in writers.values():
        writer.close()
    bar.close()
    stats = {
        "inputs": [{"path": str(p), "sha256": sha256_file(p)} for p in input_paths],
        "token_dtype": dtype.name,
        "splits": {split: writers[split].stats() for split in SPLITS},
        "corpus": tally.to_dict(),
    }
    write_json(stats_path, stats)
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
    weights: Mapping[str, float] | None = None,
) -> dict:
    """Gather the parts' stats into `manifest.json`: counts per split and the lineage hashes.

    `source_sha256` is the SHA-256 over the SHA-256s of the deduplicated files, by path;
    `tokenizer_sha256` the tokenizer's (helox.tokens.interface.Tokenizer.sha256);
    `shards_sha256` that of the shards.
    `sources` holds, per `corpus.sources` name, its `weight`, its `tokens` and `documents`
    per split, its train tokens before mixing (`natural_train_tokens`), its `share` of the
    train tokens and its effective `epochs` (train tokens written / train tokens it has).
    """
    shards_dir = Path(shards_dir)
    parts = [read_json(p) for p in part_stats_paths]
    inputs = [item for part in parts for item in part["inputs"]]
    tokenizer = load_tokenizer(tokenizer)
    splits = {}
    for split in SPLITS:
        totals = {"documents": 0, "tokens": 0, "bytes": 0}
        for part in parts:
            for key in totals:
                totals[key] += part["splits"][split][key]
        files = [str(Path(p).relative_to(shards_dir)) for p in shard_paths[split]]
        splits[split] = {"files": files, **totals}
    check_splits_hold_tokens(splits)
    manifest = {
        "splits": splits,
        "vocab_size": tokenizer.vocab_size,
        "token_dtype": token_dtype(tokenizer.vocab_size).name,
        "eos_id": tokenizer.eos,
        "bos_id": tokenizer.bos,
        "adds_bos": tokenizer.adds_bos,
        "pad_id": tokenizer.pad,
        "tokenizer_kind": tokenizer.kind,
        "tokenizer_sha256": tokenizer.sha256,
        "source_sha256": hashlib.sha256(
            "".join(i["sha256"] for i in sorted(inputs, key=lambda i: i["path"])).encode()
        ).hexdigest(),
        "source_files": sorted(inputs, key=lambda i: i["path"]),
        "shards_sha256": sha256_files(p for split in SPLITS for p in shard_paths[split]),
        "sources": source_rows(parts, weights or {}, splits["train"]["tokens"]),
    }
    write_json(manifest_path, manifest)
    return manifest


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


def source_rows(
    parts: list[dict], weights: Mapping[str, float], train_tokens: int
) -> dict[str, dict]:
    """The manifest's `sources`: each source's counts summed over the parts, and its epochs."""
    totals = SourceTally()
    for part in parts:
        for name, row in part.get("corpus", {}).items():
            for split, cell in row.items():
                totals.add_counts(name, split, cell)
    rows = {}
    for name, row in totals.to_dict().items():
        natural = row["natural_train"]["tokens"]
        rows[name] = {
            "weight": weights.get(name, 1.0),
            "tokens": {split: row[split]["tokens"] for split in SPLITS},
            "documents": {split: row[split]["documents"] for split in SPLITS},
            "natural_train_tokens": natural,
            "share": row["train"]["tokens"] / train_tokens if train_tokens else 0.0,
            "epochs": row["train"]["tokens"] / natural if natural else 0.0,
        }
    return rows


def build_dataset_shards(
    input_paths: list[StrPath],
    tokenizer: TokenizerSource,
    shards_dir: StrPath,
    config: ShardsConfig,
    seed: int,
    threads: int = 1,
    weights: Mapping[str, float] | None = None,
) -> dict:
    """The whole shards stage in one call (what the rules do as a scatter and a gather).

    With `weights` for two sources or more, each part's tokens are counted first and the
    train split is mixed by them.
    """
    shards_dir = Path(shards_dir)
    tokenizer = load_tokenizer(tokenizer)
    shard_paths: dict[str, list[Path]] = {split: [] for split in SPLITS}
    stats_paths = []
    part_count = min(config.parts, len(input_paths))
    inputs = [inputs_of_part(list(input_paths), part, config.parts) for part in range(part_count)]
    factors = None
    if weights and len(weights) > 1:
        count_paths = [shards_dir / "counts" / f"part-{part}.json" for part in range(part_count)]
        for part_inputs, count_path in zip(inputs, count_paths, strict=True):
            count_part(part_inputs, tokenizer, count_path, config, seed, threads)
        factors = mixture_factors(count_paths, weights)
    for part, part_inputs in enumerate(inputs):
        outputs = {split: shards_dir / split / f"part-{part}.arrow" for split in SPLITS}
        stats_path = shards_dir / "stats" / f"part-{part}.json"
        tokenize_part(part_inputs, tokenizer, outputs, stats_path, config, seed, threads, factors)
        for split in SPLITS:
            shard_paths[split].append(outputs[split])
        stats_paths.append(stats_path)
    return write_manifest(
        shards_dir,
        stats_paths,
        shard_paths,
        tokenizer,
        shards_dir / "manifest.json",
        weights,
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
