"""Progress bars on a terminal, periodic log lines elsewhere."""

from __future__ import annotations

import io
import logging
from types import SimpleNamespace

import torch

from helox.common.progress import CLEAR_LINE, ProgressBar
from helox.train.hooks import ProgressHook
from helox.train.steps import StepResult


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar_on_a_terminal_shows_count_rate_eta_and_note():
    terminal = Terminal()
    bar = ProgressBar("cleaning", 4e6, "MB", scale=1e6, note=lambda: "12 docs", stream=terminal)
    bar.update(1e6)
    line = bar.line()
    assert line.startswith("cleaning [######.................")
    assert "1.0/4.0 MB" in line and "MB/s" in line and "ETA 0:" in line and line.endswith("12 docs")
    bar.close()
    assert terminal.getvalue().startswith(CLEAR_LINE) and terminal.getvalue().endswith("\n")


def test_bar_elsewhere_logs_plain_lines_now_and_then(caplog):
    stream = io.StringIO()
    bar = ProgressBar("tokenizing", 10, "docs", stream=stream, log_seconds=0.0)
    with caplog.at_level(logging.INFO, logger="helox.common.progress"):
        for _ in range(3):
            bar.update()
        bar.close()
    assert stream.getvalue() == ""
    assert [r.getMessage().split("]")[1].split()[0] for r in caplog.records] == [
        "1/10",
        "2/10",
        "3/10",
    ]


def test_training_hook_draws_steps_only_on_a_terminal():
    trainer = SimpleNamespace(
        is_main=True,
        config=SimpleNamespace(total_steps=3),
        progress=SimpleNamespace(loss_history=[[1, 4.5]]),
    )
    terminal, pipe = Terminal(), io.StringIO()
    for stream in (terminal, pipe):
        hook = ProgressHook("pretrain", stream)
        for step in (2, 3):  # resumed after step 1
            hook(trainer, StepResult(step, 1e-3, torch.tensor([4.5, 1.0, 0.0])))
    assert "pretrain [" in terminal.getvalue() and "3/3 steps" in terminal.getvalue()
    assert "loss 4.5000" in terminal.getvalue()
    assert pipe.getvalue() == ""
