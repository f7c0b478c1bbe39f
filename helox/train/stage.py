"""One training stage from set-up to `final/` folder, shared by pretraining, SFT and DPO.

A stage's run holds what it was given besides its inputs as a `StageRun`, builds its model,
batches and `RunSpec`; `train_stage` does the rest the same way for all of them: tracking
params and lineage tags, the `Trainer` run (with the metrics of the starting model first where
the stage asks for them), `metrics.json` and `save_final`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from helox.model.device import DeviceManager
from helox.model.folder import save_final
from helox.model.network import HeloxLM
from helox.tokens.interface import Tokenizer
from helox.train.config import TrainingConfig
from helox.train.hooks import ProgressHook
from helox.train.lineage import lineage_tags, output_tags, pipeline_key
from helox.train.loop import BatchSource, Trainer, ValBatchesFn
from helox.train.objective import Objective
from helox.train.tracking import Tracker, TrackingConfig

log = logging.getLogger(__name__)


@dataclass
class StageRun:
    """What every stage's run is given besides its inputs, in the order the run takes it."""

    output_dir: str | os.PathLike
    config: TrainingConfig  # the stage's section, whose SECTION names the stage
    seed: int
    tracking: TrackingConfig
    checkpoint_dir: str | os.PathLike | None = None  # None: `checkpoints/` beside output_dir
    threads: int | None = None
    snakemake_job: str | None = None

    @property
    def stage(self) -> str:
        """The stage's name (pretrain, sft, dpo): its tracking run's and its metrics'."""
        return self.config.SECTION

    @property
    def checkpoints(self) -> Path:
        if self.checkpoint_dir:
            return Path(self.checkpoint_dir)
        return Path(self.output_dir).parent / "checkpoints"

    def start_devices(self) -> DeviceManager:
        """This process's DeviceManager, in the torchrun process group when there is one."""
        device_manager = DeviceManager(self.config.device, self.threads)
        device_manager.init_distributed()
        return device_manager


@dataclass
class RunSpec:
    """What one stage's run built besides its model and batches: the identity of its inputs,
    what it records, and how it trains."""

    fingerprint: str  # run_fingerprint of everything that decides the run
    tokenizer: Tokenizer  # what the stage tokenized with; its files go into final/
    params: dict[str, Any]  # tracked as run parameters (configs, inputs), with seed and fingerprint
    # Hashes of what the run read; "pipeline" (the parent tracking run) defaults to this
    # run's own key and "manifest_sha256" to None.
    lineage: dict[str, Any]
    result: str  # logged when done: a %-format of metrics.json's entries by name
    summary: dict[str, Any] = field(default_factory=dict)  # stage entries of metrics.json
    baselines: dict[str, float] = field(default_factory=dict)  # tracked at the last step
    compare_with_start: bool = False  # evaluate before training; report it as base_*
    token_bytes: Tensor | None = None  # bytes per token id, for bits per byte
    objective: Objective | None = None  # None: next-token prediction
    # Entries of metrics.json known only once training ends (what the loader drew).
    after_training: Callable[[], dict[str, Any]] | None = None
    tuned_from: Path | None = None  # the folder a fine-tuning stage tunes: its adapter's base


def train_stage(
    run: StageRun,
    spec: RunSpec,
    model: HeloxLM,
    train_batches: BatchSource,
    val_batches_fn: ValBatchesFn,
    device_manager: DeviceManager,
) -> dict:
    """Train `model` as `run` and `spec` say, write `run.output_dir`, log `spec.result`, leave
    the process group of `device_manager`, and return its metrics.json.

    Resumes from `run.checkpoints` when a killed run with the same fingerprint left a
    checkpoint there. Every process calls it under torchrun; rank 0 alone tracks and writes.
    """
    is_main = device_manager.dist.is_main
    lineage = {
        "pipeline": pipeline_key(spec.fingerprint),
        "manifest_sha256": None,
        **spec.lineage,
    }
    params = {**spec.params, "seed": run.seed, "fingerprint": spec.fingerprint}
    tags = lineage_tags(lineage["manifest_sha256"], lineage["tokenizer_sha256"], run.snakemake_job)
    tracker_config = run.tracking if is_main else dataclasses.replace(run.tracking, enabled=False)
    with Tracker(tracker_config, run.stage, params, tags, pipeline=lineage["pipeline"]) as tracker:
        trainer = Trainer(
            model,
            train_batches,
            val_batches_fn,
            run.config,
            device_manager,
            run.checkpoints,
            spec.fingerprint,
            tracker,
            hooks=[ProgressHook(run.stage)],
            token_bytes=spec.token_bytes,
            objective=spec.objective,
        )
        start = trainer.evaluate() if spec.compare_with_start else {}
        trained = trainer.fit()
        if spec.baselines:
            tracker.log_metrics(
                {f"val/{key.removeprefix('val_')}": value for key, value in spec.baselines.items()},
                trained["steps"],
            )
        tracker.set_tags(output_tags(run.output_dir, run.checkpoints))
    metrics = {
        "stage": run.stage,
        **{key: value for key, value in trained.items() if key.startswith("val_")},
        **{f"base_{key}": value for key, value in start.items() if key.startswith("val_")},
        **spec.summary,
        **(spec.after_training() if spec.after_training else {}),
        "lineage": lineage,
        **{key: value for key, value in trained.items() if not key.startswith("val_")},
    }
    save_final(run.output_dir, model, model.config, spec.tokenizer, metrics, spec.tuned_from)
    if is_main:
        log.info(spec.result, metrics)
    device_manager.shutdown()
    return metrics
