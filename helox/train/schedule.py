"""Learning-rate schedules: linear warmup, then cosine decay or warmup-stable-decay (WSD).

Each is a pure function of the step, so resuming needs nothing but the step number.
Both reach `min_lr_ratio` of the peak at `total_steps`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from helox.train.config import TrainingConfig


@dataclass(frozen=True)
class WarmupCosine:
    """Linear warmup, then a cosine from the peak down to `min_lr_ratio` of it."""

    learning_rate: float
    warmup_steps: int
    total_steps: int
    min_lr_ratio: float

    def multiplier(self, step: int) -> float:
        """Fraction of the peak rate for optimizer step `step` (0-based)."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        decay_steps = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine

    def __call__(self, step: int) -> float:
        return self.learning_rate * self.multiplier(step)


@dataclass(frozen=True)
class WarmupStableDecay:
    """Linear warmup, the peak held, then a linear decay to `min_lr_ratio` over the last
    `decay_fraction` of the steps (the WSD schedule of MiniCPM)."""

    learning_rate: float
    warmup_steps: int
    total_steps: int
    min_lr_ratio: float
    decay_fraction: float

    def multiplier(self, step: int) -> float:
        """Fraction of the peak rate for optimizer step `step` (0-based)."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        decay_steps = max(1, round(self.decay_fraction * self.total_steps))
        decay_start = max(self.warmup_steps, self.total_steps - decay_steps)
        if step < decay_start:
            return 1.0
        progress = min(1.0, (step - decay_start) / max(1, self.total_steps - decay_start))
        return 1.0 - (1.0 - self.min_lr_ratio) * progress

    def __call__(self, step: int) -> float:
        return self.learning_rate * self.multiplier(step)


Schedule = WarmupCosine | WarmupStableDecay


def make_schedule(config: TrainingConfig) -> Schedule:
    """The schedule `config.lr_schedule` names."""
    common = (config.learning_rate, config.warmup_steps, config.total_steps, config.min_lr_ratio)
    if config.lr_schedule == "cosine":
        return WarmupCosine(*common)
    if config.lr_schedule == "wsd":
        return WarmupStableDecay(*common, config.decay_fraction)
    raise ValueError(f"unknown lr_schedule {config.lr_schedule!r}; use cosine or wsd")
