"""Learning-rate schedule: linear warmup, then cosine decay to `min_lr_ratio` of the peak.

A pure function of the step, so resuming needs nothing but the step number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from helox.config import TrainingConfig


@dataclass(frozen=True)
class WarmupCosine:
    learning_rate: float
    warmup_steps: int
    total_steps: int
    min_lr_ratio: float

    @classmethod
    def from_config(cls, config: TrainingConfig) -> WarmupCosine:
        return cls(
            config.learning_rate, config.warmup_steps, config.total_steps, config.min_lr_ratio
        )

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
