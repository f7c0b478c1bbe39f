"""What a run records of its progress: the state a resumed run continues from, and each
optimizer step's readings, left on the device until the loop reads them."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class Progress:
    """Everything about the run so far that a resumed run must continue from."""

    step: int = 0
    tokens_seen: int = 0
    skipped_steps: int = 0  # updates dropped for a non-finite loss or gradient norm
    train_seconds: float = 0.0  # in training steps, evaluations and checkpoints aside
    elapsed_seconds: float = 0.0  # wall clock, over every session of the run
    # [step, loss] of every step; what each log line and each evaluation measured.
    loss_history: list[list[float]] = field(default_factory=list)
    log_history: list[dict[str, float]] = field(default_factory=list)
    eval_history: list[dict[str, float]] = field(default_factory=list)


@dataclass
class StepResult:
    """One optimizer step. Its loss, gradient norm and skip flag stay on the device as
    `readings` until read, so the host can queue the next step meanwhile."""

    step: int
    lr: float
    readings: Tensor  # [loss, grad_norm, 1.0 if the update was skipped else 0.0]
    values: list[float] | None = None

    def read(self) -> list[float]:
        if self.values is None:
            self.values = self.readings.tolist()
        return self.values

    @property
    def loss(self) -> float:
        return self.read()[0]

    @property
    def grad_norm(self) -> float:
        return self.read()[1]

    @property
    def skipped(self) -> bool:
        return bool(self.read()[2])


def format_seconds(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
