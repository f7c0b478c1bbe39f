"""One training stage from set-up to `final/` folder, shared by pretraining, SFT and DPO.

A stage builds its model, batches and `RunSpec`; `train_stage` does the rest the same way
for all of them: tracking params and lineage tags, the `Trainer` run (with the metrics of
the starting model first where the stage asks for them), `metrics.json` and `save_final`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from helox.model.device import DeviceManager
from helox.model.folder import save_final
from helox.model.network import HeloxLM
from helox.train.config import TrainingConfig
from helox.train.hooks import ProgressHook
from helox.train.lineage import lineage_tags, output_tags, pipeline_key
from helox.train.loop import BatchSource, Trainer, ValBatchesFn
from helox.train.objective import Objective
from helox.train.tracking import Tracker, TrackingConfig


@dataclass
class RunSpec:
    """What one stage's run is: its name, config, inputs' identity and outputs."""

    stage: str  # "pretrain", "sft", "dpo": the tracking run's name and metrics' "stage"
    config: TrainingConfig
    seed: int
    fingerprint: str  # run_fingerprint of everything that decides the run
    output_dir: Path
    checkpoint_dir: Path
    tokenizer_path: Path
    params: dict[str, Any]  # tracked as run parameters (configs, inputs), with seed and fingerprint
    # Hashes of what the run read; "pipeline" (the parent tracking run) defaults to this
    # run's own key and "manifest_sha256" to None.
    lineage: dict[str, Any]
    summary: dict[str, Any] = field(default_factory=dict)  # stage entries of metrics.json
    baselines: dict[str, float] = field(default_factory=dict)  # tracked at the last step
    compare_with_start: bool = False  # evaluate before training; report it as base_*
    objective: Objective | None = None  # None: next-token prediction
    token_bytes: Tensor | None = None  # bytes per token id, for bits per byte
    snakemake_job: str | None = None


def train_stage(
    spec: RunSpec,
    model: HeloxLM,
    train_batches: BatchSource,
    val_batches_fn: ValBatchesFn,
    device_manager: DeviceManager,
    tracking: TrackingConfig,
) -> dict:
    """Train `model` as `spec` says, write `spec.output_dir`, and return its metrics.json.

    Resumes from `spec.checkpoint_dir` when a killed run with the same fingerprint left a
    checkpoint there. Every process calls it under torchrun; rank 0 alone tracks and writes.
    """
    is_main = device_manager.dist.is_main
    lineage = {
        "pipeline": pipeline_key(spec.fingerprint),
        "manifest_sha256": None,
        **spec.lineage,
    }
    params = {**spec.params, "seed": spec.seed, "fingerprint": spec.fingerprint}
    tags = lineage_tags(lineage["manifest_sha256"], lineage["tokenizer_sha256"], spec.snakemake_job)
    tracker_config = tracking if is_main else dataclasses.replace(tracking, enabled=False)
    with Tracker(tracker_config, spec.stage, params, tags, pipeline=lineage["pipeline"]) as tracker:
        trainer = Trainer(
            model,
            train_batches,
            val_batches_fn,
            spec.config,
            device_manager,
            spec.checkpoint_dir,
            spec.fingerprint,
            tracker,
            hooks=[ProgressHook(spec.stage)],
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
        tracker.set_tags(output_tags(spec.output_dir, spec.checkpoint_dir))
    metrics = {
        "stage": spec.stage,
        **{key: value for key, value in trained.items() if key.startswith("val_")},
        **{f"base_{key}": value for key, value in start.items() if key.startswith("val_")},
        **spec.summary,
        "lineage": lineage,
        **{key: value for key, value in trained.items() if not key.startswith("val_")},
    }
    save_final(spec.output_dir, model, model.config, spec.tokenizer_path, metrics)
    return metrics
