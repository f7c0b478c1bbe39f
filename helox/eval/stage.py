"""The evaluate stage: one model folder → bits per byte, HumanEval and multiple-choice tasks.

Its JSON (`results/eval/{stage}.json`) is what the eval card, the report and MLflow show.
Every number sits beside its baseline: bits per byte beside a unigram model's, pass@k
beside the problems attempted, accuracy beside chance.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from helox.common.io import read_json, write_json
from helox.eval.bpb import evaluate_folder
from helox.eval.choice import run_choice_task
from helox.eval.config import EvalConfig
from helox.eval.humaneval import run_humaneval
from helox.model.device import DeviceManager
from helox.tokens.loader import unigram_baseline
from helox.train.metrics import bits_per_byte
from helox.train.tracking import TrackingConfig, log_to_final_run

log = logging.getLogger(__name__)

BPB_SPLITS = ("val", "test")


def run_evaluation(
    folder: str | os.PathLike,
    stage: str,
    shards_dir: str | os.PathLike,
    task_paths: Mapping[str, str | os.PathLike],
    config: EvalConfig,
    seed: int,
    output_path: str | os.PathLike,
    seq_len: int | None = None,
    tracking: TrackingConfig | None = None,
    baseline: bool = False,
) -> dict[str, Any]:
    """Score `folder` on every evaluation the config enables, write `output_path`, and log
    the card's numbers to the MLflow run that wrote the folder. A `baseline` (an imported
    model of eval.baselines, `stage` its name) is marked so in the result."""
    folder = Path(folder)
    device = DeviceManager(config.device).device.type
    seconds: dict[str, float] = {}
    result: dict[str, Any] = {"stage": stage, "folder": str(folder), "device": device}
    if baseline:
        result["baseline"] = True
    with timed(seconds, "bpb"):
        result["bpb"] = {
            split: split_bpb(folder, shards_dir, split, seq_len, config, device)
            for split in BPB_SPLITS
        }
    if config.humaneval.enabled:
        with timed(seconds, "humaneval"):
            result["humaneval"] = run_humaneval(folder, config.humaneval, device, seed)
    result["tasks"] = {}
    for name, path in task_paths.items():
        with timed(seconds, name):
            result["tasks"][name] = run_choice_task(
                folder, path, config.shots, seed, device, config.batch_size
            )
    result["seconds"] = {**seconds, "total": sum(seconds.values())}
    write_json(output_path, result)
    log.info("%s: %s", stage, card_metrics(result))
    if tracking is not None:
        log_to_final_run(tracking, folder, card_metrics(result))
    return result


@contextmanager
def timed(seconds: dict[str, float], name: str) -> Iterator[None]:
    """Add the wall time of the block to `seconds[name]`."""
    started = time.perf_counter()
    yield
    seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - started


def split_bpb(
    folder: Path,
    shards_dir: str | os.PathLike,
    split: str,
    seq_len: int | None,
    config: EvalConfig,
    device: str,
) -> dict[str, Any]:
    """The folder's loss and bits per byte on one split, beside a unigram model's bits per
    byte (train-split token counts, add-one smoothed) at the same bytes per token where the
    shards have a train split (a baseline's held-out shards have none)."""
    scored = evaluate_folder(
        folder,
        shards_dir,
        split=split,
        seq_len=seq_len,
        batch_size=config.batch_size,
        max_batches=config.bpb_max_batches,
        device=device,
    )
    manifest_path = Path(shards_dir) / "manifest.json"
    if "train" in read_json(manifest_path)["splits"]:
        unigram_loss = unigram_baseline(manifest_path, "train", split)
        scored["unigram_bpb"] = bits_per_byte(unigram_loss * scored["tokens"], scored["bytes"])
    return scored


def card_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """The card's numbers of one stage's evaluation, flat, as MLflow metric names."""
    metrics = {f"eval/{split}_bpb": result["bpb"][split]["bpb"] for split in BPB_SPLITS}
    humaneval = result.get("humaneval")
    if humaneval:
        metrics.update(
            {
                f"eval/humaneval_{key.replace('@', '_at_')}": value
                for key, value in pass_at_k(humaneval).items()
            }
        )
        metrics["eval/humaneval_problems"] = humaneval["attempted"]
    for name, task in result.get("tasks", {}).items():
        for key in ("accuracy", "centered_accuracy", "chance"):
            metrics[f"eval/{name}_{key}"] = task[key]
    return metrics


def pass_at_k(humaneval: Mapping[str, Any]) -> dict[str, float]:
    """{"pass@1": …, "pass@10": …} of a HumanEval result, in order of k."""
    found = {key: value for key, value in humaneval.items() if key.startswith("pass@")}
    return dict(sorted(found.items(), key=lambda item: int(item[0].removeprefix("pass@"))))
