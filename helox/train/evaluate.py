"""Scoring a model on batches: summed loss, tokens and bytes, and what they make.

Shared by the training loop's periodic evaluation and the evaluation of a model folder
(helox.eval.bpb), so both report the same numbers for the same batches.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor

from helox.model.network import IGNORE_INDEX, HeloxLM
from helox.train.metrics import bits_per_byte

Batch = tuple[Tensor, Tensor] | tuple[Tensor, Tensor, dict[str, Tensor]]
Autocast = AbstractContextManager  # the mixed-precision context a forward pass runs under


def to_device(batch: Batch, device: torch.device) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """(input_ids, labels[, model keyword tensors]) moved to `device`, the keywords as a dict."""
    input_ids, labels, *rest = batch
    extra = rest[0] if rest else {}
    return (
        move(input_ids, device),
        move(labels, device),
        {key: move(value, device) for key, value in extra.items()},
    )


def move(tensor: Tensor, device: torch.device) -> Tensor:
    """`tensor` on `device`; a CPU tensor bound for CUDA goes through pinned memory, so the
    copy runs asynchronously while the host prepares the next batch."""
    if device.type == "cuda" and tensor.device.type == "cpu":
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)


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
    autocast: Autocast | None = None,
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
