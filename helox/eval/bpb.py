"""Loss, perplexity and bits per byte of a model folder on one split of token shards."""

from __future__ import annotations

import os
from itertools import islice
from pathlib import Path

from helox.common.io import read_json
from helox.model.config import sequence_limit
from helox.model.device import DeviceManager
from helox.model.folder import METRICS_FILE, load_final
from helox.tokens.loader import TokenStream, eval_batches
from helox.tokens.shards import manifest_of_tokenizer
from helox.tokens.vocab import load_tokenizer
from helox.train.evaluate import score_batches
from helox.train.metrics import token_byte_lengths


def evaluate_folder(
    folder: str | os.PathLike,
    shards_dir: str | os.PathLike,
    split: str = "val",
    seq_len: int | None = None,
    batch_size: int = 8,
    max_batches: int | None = None,
    device: str = "auto",
) -> dict:
    """Loss, perplexity and bits per byte of a final folder's model on one split of shards.

    `seq_len` defaults to the length the model was trained at (its `metrics.json`), else its
    largest. The shards must have been tokenized with the folder's own tokenizer.
    """
    folder, manifest_path = Path(folder), Path(shards_dir) / "manifest.json"
    tokenizer = load_tokenizer(folder)
    manifest_of_tokenizer(manifest_path, tokenizer, "bits per byte would be meaningless")
    device_manager = DeviceManager(device)
    model, config = load_final(folder, device_manager.device)
    trained = folder / METRICS_FILE
    trained_seq_len = read_json(trained).get("seq_len") if trained.is_file() else None
    longest, key = sequence_limit(config)
    seq_len = seq_len or trained_seq_len or longest
    if seq_len > longest:
        raise ValueError(f"seq_len {seq_len} exceeds the model's {key} {longest}")
    stream = TokenStream(manifest_path, split)
    score = score_batches(
        model,
        islice(eval_batches(stream, seq_len, batch_size), max_batches),
        device_manager.device,
        token_byte_lengths(tokenizer),
    )
    return {
        "folder": str(folder),
        "shards": str(shards_dir),
        "split": split,
        "seq_len": seq_len,
        "tokens": score.tokens,
        "bytes": score.bytes,
        **score.as_metrics(prefix=""),
    }
