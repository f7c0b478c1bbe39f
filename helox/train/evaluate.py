"""Scoring a model on batches: summed loss, tokens and bytes, and what they make.

Shared by the training loop's periodic evaluation and `helox eval` (`evaluate_folder`),
so both report the same numbers for the same batches.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import torch
from torch import Tensor

from helox.data.loader import TokenStream, eval_batches
from helox.io import read_json, sha256_file
from helox.model import IGNORE_INDEX, HeloxLM
from helox.train.checkpoint import load_final
from helox.train.device import DeviceManager
from helox.train.metrics import bits_per_byte, token_byte_lengths

Batch = tuple[Tensor, Tensor] | tuple[Tensor, Tensor, dict[str, Tensor]]


def to_device(batch: Batch, device: torch.device) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """(input_ids, labels[, model keyword tensors]) moved to `device`, the keywords as a dict."""
    input_ids, labels, *rest = batch
    extra = rest[0] if rest else {}
    return (
        input_ids.to(device, non_blocking=True),
        labels.to(device, non_blocking=True),
        {key: value.to(device, non_blocking=True) for key, value in extra.items()},
    )


@dataclass
class Score:
    """Summed cross-entropy over the scored tokens, and the UTF-8 bytes they stand for."""

    nats: float
    tokens: int
    bytes: int

    def as_metrics(self, prefix: str = "val_") -> dict[str, float]:
        """Loss (nats/token), perplexity and, when bytes were counted, bits per byte."""
        if self.tokens == 0:
            raise ValueError("no tokens to score: every label is ignored or there are no batches")
        loss = self.nats / self.tokens
        metrics = {f"{prefix}loss": loss, f"{prefix}perplexity": math.exp(min(loss, 700.0))}
        if self.bytes:
            metrics[f"{prefix}bpb"] = bits_per_byte(self.nats, self.bytes)
        return metrics


@torch.no_grad()
def score_batches(
    model: HeloxLM,
    batches: Iterable[Batch],
    device: torch.device,
    token_bytes: Tensor | None = None,
    autocast: AbstractContextManager | None = None,
) -> Score:
    """Sum the loss of every label that is not IGNORE_INDEX; the model is left in eval mode."""
    model.eval()
    total_nats = torch.zeros((), dtype=torch.float64, device=device)
    token_count = byte_count = 0
    for batch in batches:
        input_ids, labels, extra = to_device(batch, device)
        scored = labels != IGNORE_INDEX
        count = int(scored.sum())
        if count == 0:
            continue
        if token_bytes is not None:
            byte_count += int(token_bytes[labels[scored].cpu()].sum())
        with autocast or nullcontext():
            loss = model(input_ids, labels, **extra).loss
        total_nats += loss.double() * count
        token_count += count
    return Score(float(total_nats), token_count, byte_count)


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
    tokenizer_path = folder / "tokenizer.model"
    manifest = read_json(manifest_path)
    if manifest.get("tokenizer_sha256") != sha256_file(tokenizer_path):
        raise ValueError(
            f"{manifest_path} was tokenized with another tokenizer than {tokenizer_path}; "
            "bits per byte would be meaningless"
        )
    device_manager = DeviceManager(device)
    model, config = load_final(folder, device_manager.device)
    trained = folder / "metrics.json"
    trained_seq_len = read_json(trained).get("seq_len") if trained.is_file() else None
    seq_len = seq_len or trained_seq_len or config.max_position_embeddings
    if seq_len > config.max_position_embeddings:
        raise ValueError(
            f"seq_len {seq_len} exceeds the model's max_position_embeddings "
            f"{config.max_position_embeddings}"
        )
    stream = TokenStream(manifest_path, split)
    score = score_batches(
        model,
        islice(eval_batches(stream, seq_len, batch_size), max_batches),
        device_manager.device,
        token_byte_lengths(tokenizer_path),
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
