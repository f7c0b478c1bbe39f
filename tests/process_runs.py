"""What the tests that train in several processes or on several nodes share: their pretraining
job, the one process whose run they must follow, and how they compare with it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, TypeVar

import pytest
from test_train import MODEL, TRAINING

from helox.train.config import TrainingConfig
from helox.train.pretrain import PretrainJob, launch_pretrain
from helox.train.tracking import TrackingConfig

NO_TRACKING = TrackingConfig(enabled=False)
SEED = 5
# Dropout draws its masks per process, so that no two layouts could see the same model.
MODEL_WITHOUT_DROPOUT = dataclasses.replace(MODEL, dropout=0.0)

Config = TypeVar("Config", bound=TrainingConfig)


def short_pretraining(steps: int, **changes: Any) -> TrainingConfig:
    """tests/test_train.py's TRAINING for `steps` steps (of one micro-batch each unless
    `changes` say otherwise), evaluated at the last."""
    fields = {"gradient_accumulation_steps": 1, "total_steps": steps, "eval_steps": steps}
    return dataclasses.replace(TRAINING, **{**fields, **changes})


def in_one_process(config: Config) -> Config:
    """`config` trained by one process that takes the rows of all of its processes."""
    batch_size = config.processes * config.batch_size
    return dataclasses.replace(config, batch_size=batch_size, nproc=1, nodes=1, fsdp=False)


def pretrain_job(
    manifest: Path, spm_model: Path, output: Path, config: TrainingConfig, threads: int = 1
) -> PretrainJob:
    """The dropout-free tiny model pretrained on `manifest` into `output`, seeded, untracked."""
    model = MODEL_WITHOUT_DROPOUT
    return PretrainJob(
        str(manifest),
        str(spm_model),
        str(output),
        model,
        config,
        SEED,
        NO_TRACKING,
        threads=threads,
    )


def one_process_pretraining(
    manifest: Path, spm_model: Path, output: Path, config: TrainingConfig
) -> dict:
    """The metrics of `pretrain_job`'s run, trained `in_one_process` (on one thread)."""
    return launch_pretrain(pretrain_job(manifest, spm_model, output, in_one_process(config)))


def resumed_step(log: str) -> int:
    """The step of the first "resumed from ... at step N" in `log`."""
    return int(log.split("resumed from ")[1].split(" at step ")[1].split()[0])


def assert_same_losses(ours: dict, theirs: dict, rel: float = 1e-5) -> None:
    """`ours` logged as many steps as `theirs`, each loss within `rel` of theirs."""
    for (step, our_loss), (_, their_loss) in zip(
        ours["loss_history"], theirs["loss_history"], strict=True
    ):
        assert our_loss == pytest.approx(their_loss, rel=rel), f"step {step}"


def assert_follows(ours: dict, theirs: dict, steps: int) -> None:
    """`ours` logged every step from 1 to `steps`, with the losses, held-out loss and tokens
    seen of `theirs`."""
    assert [step for step, _ in ours["loss_history"]] == list(range(1, steps + 1))
    assert_same_losses(ours, theirs)
    assert ours["val_loss"] == pytest.approx(theirs["val_loss"], rel=1e-5)
    assert ours["train_tokens_seen"] == theirs["train_tokens_seen"]
