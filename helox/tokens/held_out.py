"""Held-out shards in another tokenizer: the val and test documents of the pipeline's shards,
tokenized with a model's own tokenizer, so that its bits per byte are measured on the same
bytes as the stages' (an imported baseline of eval.baselines).

Each document's split comes from helox.tokens.shards.assign_split with the pipeline's seed and
shards section, so the documents are exactly those the shards jobs put in val and test, in the
order their files hold them. Training documents are passed over before tokenizing. The folder
holds `val.arrow`, `test.arrow` and a `manifest.json` of those two splits only (no train split,
so no unigram model of it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from helox.common.io import iter_jsonl, sha256_file, sha256_files, write_json
from helox.common.progress import ProgressBar
from helox.tokens.shards import (
    ShardsConfig,
    ShardWriter,
    StrPath,
    assign_split,
    encoded_records,
    inputs_of_part,
    source_fields,
    token_dtype,
    tokenizer_fields,
)
from helox.tokens.vocab import TokenizerSource, load_tokenizer

log = logging.getLogger(__name__)

HELD_OUT_SPLITS = ("val", "test")


def shards_order(input_paths: Sequence[StrPath], parts: int) -> list[StrPath]:
    """The deduplicated parts in the order the shards jobs' val and test files hold them."""
    paths = list(input_paths)
    return [path for part in range(parts) for path in inputs_of_part(paths, part, parts)]


def held_out_records(
    input_paths: Sequence[StrPath],
    config: ShardsConfig,
    seed: int,
    on_read: Callable[[int], None] | None = None,
) -> Iterator[dict]:
    """`{"split", "text"}` of each val and test document, in the shards' order."""
    for path in shards_order(input_paths, config.parts):
        for record in iter_jsonl(path, on_read):
            split = assign_split(record["text"], seed, config)
            if split in HELD_OUT_SPLITS:
                yield {"split": split, "text": record["text"]}


def write_held_out(
    input_paths: Sequence[StrPath],
    tokenizer: TokenizerSource,
    shards_dir: StrPath,
    writers: dict[str, ShardWriter],
    config: ShardsConfig,
    seed: int,
    threads: int,
) -> None:
    """Tokenize the held-out documents into `writers`, one per split."""
    tokenizer = load_tokenizer(tokenizer)
    bar = ProgressBar(
        f"held-out documents of {len(input_paths)} parts into {shards_dir}",
        sum(Path(path).stat().st_size for path in input_paths),
        "MB",
        scale=1e6,
    )
    records = held_out_records(input_paths, config, seed, bar.update)
    for batch in encoded_records(records, tokenizer, threads):
        for split, writer in writers.items():
            chosen = [(record, ids) for record, ids in batch if record["split"] == split]
            writer.write(
                [ids for _, ids in chosen],
                sum(len(record["text"].encode("utf-8")) for record, _ in chosen),
            )
    bar.close()


def build_held_out_shards(
    input_paths: Sequence[StrPath],
    tokenizer: TokenizerSource,
    shards_dir: StrPath,
    config: ShardsConfig,
    seed: int,
    threads: int = 1,
) -> dict:
    """Write `shards_dir`'s val and test shards and their manifest; return the manifest."""
    shards_dir = Path(shards_dir)
    tokenizer = load_tokenizer(tokenizer)
    dtype = token_dtype(tokenizer.vocab_size)
    files = {split: shards_dir / f"{split}.arrow" for split in HELD_OUT_SPLITS}
    writers = {split: ShardWriter(path, dtype) for split, path in files.items()}
    try:
        write_held_out(input_paths, tokenizer, shards_dir, writers, config, seed, threads)
    except BaseException:
        for writer in writers.values():
            writer.close(success=False)
        raise
    for writer in writers.values():
        writer.close()
    manifest = {
        "splits": {
            split: {"files": [files[split].name], **writer.stats()}
            for split, writer in writers.items()
        },
        **tokenizer_fields(tokenizer),
        **source_fields([{"path": str(p), "sha256": sha256_file(p)} for p in input_paths]),
        "shards_sha256": sha256_files(files.values()),
    }
    write_json(shards_dir / "manifest.json", manifest)
    log.info("%s: %s", shards_dir, {split: manifest["splits"][split] for split in files})
    return manifest
