"""Token shards: documents → SentencePiece ids → Arrow IPC files per split, plus a manifest.

Layout of one shard file: Arrow IPC *file* format, uncompressed (so readers can
memory-map it without a copy), one column `tokens` of type list<uint16> (list<uint32>
when the vocabulary exceeds 65,536), one row per document, each document's ids
followed by the `</s>` id. The flattened values of a split are therefore the packed
training stream, with documents separated by `</s>`.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from helox.config import ShardsConfig
from helox.io import (
    atomic_path,
    finish_atomic,
    iter_jsonl,
    name_output,
    read_json,
    sha256_file,
    sha256_files,
    write_json,
)
from helox.progress import ProgressBar
from helox.tokenizer import SPECIAL_IDS, load_tokenizer

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
ENCODE_BATCH_BYTES = 1 << 20


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

    def __init__(self, path: str | os.PathLike, dtype: np.dtype):
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


def tokenize_part(
    input_paths: list[str | os.PathLike],
    tokenizer_path: str | os.PathLike,
    output_paths: dict[str, str | os.PathLike],
    stats_path: str | os.PathLike,
    config: ShardsConfig,
    seed: int,
    threads: int = 1,
) -> dict:
    """Tokenize deduplicated parts into one Arrow file per split, and write their stats."""
    processor = load_tokenizer(tokenizer_path)
    dtype = token_dtype(processor.get_piece_size())
    eos = SPECIAL_IDS["</s>"]
    writers = {split: ShardWriter(output_paths[split], dtype) for split in SPLITS}
    bar = ProgressBar(
        f"tokenizing {', '.join(map(str, input_paths))}",
        sum(os.path.getsize(path) for path in input_paths),
        "MB",
        scale=1e6,
        note=lambda: f"{sum(writer.tokens for writer in writers.values()):,} tokens",
    )
    records = (record for path in input_paths for record in iter_jsonl(path, bar.update))
    try:
        for batch in batched(records, ENCODE_BATCH_BYTES):
            texts = [record["text"] for record in batch]
            encoded = processor.encode(texts, num_threads=threads)
            by_split: dict[str, list[list[int]]] = {split: [] for split in SPLITS}
            bytes_by_split = dict.fromkeys(SPLITS, 0)
            for text, ids in zip(texts, encoded, strict=True):
                split = assign_split(text, seed, config)
                ids.append(eos)
                by_split[split].append(ids)
                bytes_by_split[split] += len(text.encode("utf-8"))
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
    }
    write_json(stats_path, stats)
    log.info("%s: %s", [str(p) for p in input_paths], stats["splits"])
    return stats


def inputs_of_part(input_paths: list, part: int, parts: int) -> list:
    """The deduplicated parts that shards job `part` of `parts` tokenizes."""
    return input_paths[part::parts]


def write_manifest(
    shards_dir: str | os.PathLike,
    part_stats_paths: list[str | os.PathLike],
    shard_paths: dict[str, list[str | os.PathLike]],
    tokenizer_path: str | os.PathLike,
    manifest_path: str | os.PathLike,
) -> dict:
    """Gather the parts' stats into `manifest.json`: counts per split and the lineage hashes.

    `source_sha256` is the SHA-256 over the SHA-256s of the deduplicated files, by path;
    `tokenizer_sha256` that of the SentencePiece model; `shards_sha256` that of the shards.
    """
    shards_dir = Path(shards_dir)
    parts = [read_json(p) for p in part_stats_paths]
    inputs = [item for part in parts for item in part["inputs"]]
    processor = load_tokenizer(tokenizer_path)
    splits = {}
    for split in SPLITS:
        totals = {"documents": 0, "tokens": 0, "bytes": 0}
        for part in parts:
            for key in totals:
                totals[key] += part["splits"][split][key]
        files = [str(Path(p).relative_to(shards_dir)) for p in shard_paths[split]]
        splits[split] = {"files": files, **totals}
    manifest = {
        "splits": splits,
        "vocab_size": processor.get_piece_size(),
        "token_dtype": token_dtype(processor.get_piece_size()).name,
        "eos_id": SPECIAL_IDS["</s>"],
        "bos_id": SPECIAL_IDS["<s>"],
        "pad_id": SPECIAL_IDS["<pad>"],
        "tokenizer_sha256": sha256_file(tokenizer_path),
        "source_sha256": hashlib.sha256(
            "".join(i["sha256"] for i in sorted(inputs, key=lambda i: i["path"])).encode()
        ).hexdigest(),
        "source_files": sorted(inputs, key=lambda i: i["path"]),
        "shards_sha256": sha256_files(p for split in SPLITS for p in shard_paths[split]),
    }
    write_json(manifest_path, manifest)
    return manifest


def build_dataset_shards(
    input_paths: list[str | os.PathLike],
    tokenizer_path: str | os.PathLike,
    shards_dir: str | os.PathLike,
    config: ShardsConfig,
    seed: int,
    threads: int = 1,
) -> dict:
    """The whole shards stage in one call (what the rules do as a scatter and a gather)."""
    shards_dir = Path(shards_dir)
    shard_paths: dict[str, list[Path]] = {split: [] for split in SPLITS}
    stats_paths = []
    for part in range(min(config.parts, len(input_paths))):
        outputs = {split: shards_dir / split / f"part-{part}.arrow" for split in SPLITS}
        stats_path = shards_dir / "stats" / f"part-{part}.json"
        part_inputs = inputs_of_part(list(input_paths), part, config.parts)
        tokenize_part(part_inputs, tokenizer_path, outputs, stats_path, config, seed, threads)
        for split in SPLITS:
            shard_paths[split].append(outputs[split])
        stats_paths.append(stats_path)
    return write_manifest(
        shards_dir, stats_paths, shard_paths, tokenizer_path, shards_dir / "manifest.json"
    )


def read_shard(path: str | os.PathLike) -> pa.Table:
    """Memory-map one shard file (no copy of its tokens into RAM)."""
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_file(source).read_all()
