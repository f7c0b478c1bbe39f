"""What a training stage minimises and how it scores held-out batches.

The loop asks an `Objective` for each micro-batch's loss and for the validation metrics,
so one loop serves next-token training (pretraining, SFT) and preference tuning (DPO).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import torch
from torch import Tensor, nn

from helox.model.network import IGNORE_INDEX
from helox.train.evaluate import Autocast, Batch, score_batches


class Objective(Protocol):
    def loss(
        self, model: nn.Module, input_ids: Tensor, labels: Tensor, extra: dict[str, Tensor]
    ) -> tuple[Tensor, Tensor]:
        """(the loss to report, the loss to differentiate) of one micro-batch on its device."""
        ...

    def score(
        self, model: nn.Module, batches: Iterable[Batch], device: torch.device, autocast: Autocast
    ) -> dict[str, float]:
        """Validation metrics named `val_*`, `val_loss` among them; leaves `model` in eval mode."""
        ...


def z_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """PaLM's auxiliary z-loss: the mean squared log-partition function over scored tokens."""
    return logits.float().logsumexp(-1)[labels != IGNORE_INDEX].pow(2).mean()


class NextTokenObjective:
    """Cross-entropy of the labelled next tokens, plus `z_loss_weight` × z-loss when set;
    scored as loss, perplexity and (with `token_bytes`, bytes per token id) bits per byte."""

    def __init__(self, z_loss_weight: float = 0.0, token_bytes: Tensor | None = None):
        self.z_loss_weight = z_loss_weight
        self.token_bytes = token_bytes

    def loss(
        self, model: nn.Module, input_ids: Tensor, labels: Tensor, extra: dict[str, Tensor]
    ) -> tuple[Tensor, Tensor]:
        output = model(input_ids, labels, return_logits=bool(self.z_loss_weight), **extra)
        if not self.z_loss_weight:
            return output.loss, output.loss
        return output.loss, output.loss + self.z_loss_weight * z_loss(output.logits, labels)

    def score(
        self, model: nn.Module, batches: Iterable[Batch], device: torch.device, autocast: Autocast
    ) -> dict[str, float]:
        return score_batches(model, batches, device, self.token_bytes, autocast).as_metrics()
