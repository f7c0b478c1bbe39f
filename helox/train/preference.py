"""Direct Preference Optimization (Rafailov et al. 2023) as a training objective.

For a pair with chosen answer y_w and rejected answer y_l, the policy's log-ratios
r_w = log π(y_w|x) − log π_ref(y_w|x) and r_l likewise give the loss
−log σ(β (r_w − r_l)); with label smoothing ε (conservative DPO, the labels flipped with
probability ε) it is −(1−ε) log σ(β Δ) − ε log σ(−β Δ). Log-probabilities sum over the
response tokens only (the labels that are not IGNORE_INDEX). Batches come from
helox.tune.dpo_data: sequences chosen₀, rejected₀, chosen₁, ... with `sequence_ids` saying which
sequence each slot holds and `reference_logps` their log-probabilities under π_ref.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from helox.model.network import IGNORE_INDEX
from helox.train.evaluate import Autocast, Batch, to_device
from helox.train.metrics import bits_per_byte

BOOKKEEPING = ("sequence_ids", "reference_logps")


def sequence_log_probs(logits: Tensor, labels: Tensor, sequence_ids: Tensor) -> Tensor:
    """Summed log-probability of each sequence's labelled tokens, indexed by sequence id."""
    token_logps = -F.cross_entropy(
        logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX, reduction="none"
    )
    ids = sequence_ids.flatten()
    scored = (labels.flatten() != IGNORE_INDEX) & (ids >= 0)
    totals = torch.zeros(int(ids.max()) + 1, dtype=token_logps.dtype, device=logits.device)
    return totals.index_add(0, ids[scored], token_logps[scored])


def dpo_losses(
    policy_logps: Tensor,
    reference_logps: Tensor,
    beta: float,
    label_smoothing: float = 0.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-pair loss, chosen log-ratio and rejected log-ratio, for log-probabilities laid
    out chosen₀, rejected₀, chosen₁, ..."""
    ratios = policy_logps - reference_logps
    chosen_ratio, rejected_ratio = ratios[0::2], ratios[1::2]
    logits = beta * (chosen_ratio - rejected_ratio)
    losses = -(1 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)
    return losses, chosen_ratio, rejected_ratio


class DPOObjective:
    """DPO's loss for training; held-out reward accuracy, margin and log-ratios for scoring."""

    def __init__(
        self, beta: float, label_smoothing: float = 0.0, token_bytes: Tensor | None = None
    ):
        self.beta = beta
        self.label_smoothing = label_smoothing
        self.token_bytes = token_bytes

    def policy_logps(
        self, model: nn.Module, input_ids: Tensor, labels: Tensor, extra: dict[str, Tensor]
    ) -> tuple[Tensor, Tensor]:
        """(logits, summed response log-probability of each sequence) under `model`."""
        model_inputs = {k: v for k, v in extra.items() if k not in BOOKKEEPING}
        logits = model(input_ids, **model_inputs).logits
        return logits, sequence_log_probs(logits, labels, extra["sequence_ids"])

    def loss(
        self, model: nn.Module, input_ids: Tensor, labels: Tensor, extra: dict[str, Tensor]
    ) -> tuple[Tensor, Tensor]:
        _, logps = self.policy_logps(model, input_ids, labels, extra)
        losses, _, _ = dpo_losses(logps, extra["reference_logps"], self.beta, self.label_smoothing)
        loss = losses.mean()
        return loss, loss

    @torch.no_grad()
    def score(
        self, model: nn.Module, batches: Iterable[Batch], device: torch.device, autocast: Autocast
    ) -> dict[str, float]:
        """Over the held-out pairs: DPO loss; reward accuracy (chosen reward above rejected,
        ties counting half, so the reference itself scores 0.5); mean reward margin
        β (r_w − r_l); mean chosen and rejected log-ratios; how often the model gives the
        chosen answer the higher log-probability; bits per byte of the chosen answers."""
        model.eval()
        sums = dict.fromkeys(
            ("loss", "accuracy", "margin", "chosen", "rejected", "prefers", "nats", "bytes"), 0.0
        )
        pairs = 0
        for batch in batches:
            input_ids, labels, extra = to_device(batch, device)
            with autocast:
                logits, logps = self.policy_logps(model, input_ids, labels, extra)
            losses, chosen, rejected = dpo_losses(
                logps, extra["reference_logps"], self.beta, self.label_smoothing
            )
            margin = self.beta * (chosen - rejected)
            sums["loss"] += float(losses.sum())
            sums["accuracy"] += float((margin > 0).sum() + 0.5 * (margin == 0).sum())
            sums["margin"] += float(margin.sum())
            sums["chosen"] += float(chosen.sum())
            sums["rejected"] += float(rejected.sum())
            sums["prefers"] += float((logps[0::2] > logps[1::2]).sum())
            sums["nats"] -= float(logps[0::2].sum())
            if self.token_bytes is not None:
                in_chosen = (labels != IGNORE_INDEX) & (extra["sequence_ids"] % 2 == 0)
                in_chosen &= extra["sequence_ids"] >= 0
                sums["bytes"] += float(self.token_bytes[labels[in_chosen].cpu()].sum())
            pairs += len(losses)
        if pairs == 0:
            raise ValueError("no held-out preference pairs to score")
        metrics = {
            "val_loss": sums["loss"] / pairs,
            "val_reward_accuracy": sums["accuracy"] / pairs,
            "val_reward_margin": sums["margin"] / pairs,
            "val_chosen_logratio": sums["chosen"] / pairs,
            "val_rejected_logratio": sums["rejected"] / pairs,
            "val_preference_accuracy": sums["prefers"] / pairs,
        }
        if sums["bytes"]:
            metrics["val_bpb"] = bits_per_byte(sums["nats"], int(sums["bytes"]))
        return metrics
