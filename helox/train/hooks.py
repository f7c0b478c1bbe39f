"""Side concerns the training loop calls after every step."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TextIO

from helox.common.progress import ProgressBar

if TYPE_CHECKING:
    from helox.train.loop import Trainer
    from helox.train.steps import StepResult


class ProgressHook:
    """A bar over the run's steps with rate, ETA and loss, drawn when `stream` is a terminal.

    Elsewhere it stays silent: the loop's own log lines are the periodic plain report. The
    loss shown is the latest the loop has read (on log steps), so the bar never waits for
    the device.
    """

    def __init__(self, label: str, stream: TextIO | None = None):
        self.label = label
        self.stream = stream or sys.stderr
        self.bar: ProgressBar | None = None
        self.loss = float("nan")

    def __call__(self, trainer: Trainer, result: StepResult) -> None:
        if not trainer.is_main or not self.stream.isatty():
            return
        total = trainer.config.total_steps
        if self.bar is None:
            self.bar = ProgressBar(
                self.label,
                total,
                "steps",
                start=result.step - 1,
                note=lambda: f"loss {self.loss:.4f}",
                stream=self.stream,
            )
        history = trainer.progress.loss_history
        self.loss = history[-1][1] if history else float("nan")
        self.bar.update(1)
        if result.step >= total:
            self.bar.close()
