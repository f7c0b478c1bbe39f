"""Preference tuning (DPO): an SFT folder + preference pairs → a preference-tuned folder.

The SFT model is the frozen reference. Its log-probability of every answer is computed
once, before training starts (the model being trained is still the reference then), under
the autocast training uses, so no second copy of the model is held; a resumed run recomputes
them the same way. `launch_dpo` is what the rule calls: like SFT, with `nproc` or `nodes`
above 1 it starts that many torchrun processes, each computing its share of the reference
log-probabilities and training on its rows of every batch.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
import torch.distributed as dist

from helox.common.io import sha256_file
from helox.model.device import DeviceManager
from helox.model.folder import load_final
from helox.model.network import HeloxLM
from helox.tokens.vocab import load_tokenizer
from helox.train.checkpoint import run_defining, run_fingerprint
from helox.train.config import TrainingConfig
from helox.train.evaluate import to_device
from helox.train.launch import launch_stage, worker_main
from helox.train.lineage import pretrained_lineage
from helox.train.loop import seed_everything
from helox.train.metrics import token_byte_lengths
from helox.train.preference import DPOObjective, sequence_log_probs
from helox.train.stage import RunSpec, train_stage
from helox.train.tracking import TrackingConfig
from helox.tune.dpo_data import (
    EncodedPair,
    PreferenceBatches,
    encode_pairs,
    eval_pair_batches,
    read_preference_data,
    split_pairs,
)

log = logging.getLogger(__name__)


@dataclass
class DPOConfig(TrainingConfig):
    """Preference tuning of the SFT model, which stays frozen as the reference."""

    SECTION: ClassVar[str] = "dpo"

    data: str = ""  # JSONL of {"prompt" | "messages", "chosen", "rejected"}; "" = derived
    max_pairs: int = 1000  # derived pairs
    val_fraction: float = 0.05
    packing: bool = True
    beta: float = 0.1  # strength of the pull towards the reference
    label_smoothing: float = 0.0  # conservative DPO: the share of preferences assumed flipped


@torch.no_grad()
def attach_reference_logps(
    model: HeloxLM,
    pairs: list[EncodedPair],
    batch_size: int,
    device: torch.device,
    autocast: AbstractContextManager,
) -> None:
    """Set each pair's `reference` to the summed response log-probabilities under `model`.
    Under several processes each scores every world-th batch and they sum what they found,
    so every process ends with the values one process would have computed."""
    model.eval()
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    found = torch.zeros(len(pairs), 2, dtype=torch.float64, device=device)
    for start in range(rank * batch_size, len(pairs), world * batch_size):
        chunk = pairs[start : start + batch_size]
        input_ids, labels, extra = to_device(next(eval_pair_batches(chunk, len(chunk))), device)
        sequence_ids = extra.pop("sequence_ids")
        with autocast:
            logits = model(input_ids, **extra).logits
        logps = sequence_log_probs(logits, labels, sequence_ids)
        found[start : start + len(chunk)] = logps.view(-1, 2)
    if world > 1:
        dist.all_reduce(found)
    for pair, (chosen, rejected) in zip(pairs, found.tolist(), strict=True):
        pair.reference = (chosen, rejected)


def run_dpo(
    sft_dir: str | os.PathLike,
    data_path: str | os.PathLike,
    output_dir: str | os.PathLike,
    config: DPOConfig,
    seed: int,
    tracking: TrackingConfig,
    checkpoint_dir: str | os.PathLike | None = None,
    threads: int | None = None,
    snakemake_job: str | None = None,
) -> dict:
    """Tune the SFT model towards the chosen answers; record held-out preference metrics of
    the reference (base_*) and of the tuned model. The run nests under the pipeline run of
    the SFT folder. Under torchrun every process calls this, each training on its rows of
    every batch; rank 0 writes."""
    sft_dir, output_dir = Path(sft_dir), Path(output_dir)
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else output_dir.parent / "checkpoints"
    tokenizer_path = sft_dir / "tokenizer.model"
    device_manager = DeviceManager(config.device, threads)
    device_manager.init_distributed()

    data = read_preference_data(data_path)
    processor = load_tokenizer(tokenizer_path)
    train_pairs, val_pairs = split_pairs(data.items, seed, config.val_fraction)
    train_encoded = encode_pairs(train_pairs, processor, config.seq_len, data.skipped)
    val_encoded = encode_pairs(val_pairs, processor, config.seq_len, data.skipped)
    if not val_encoded:
        raise ValueError(f"{data_path}: no held-out pair has two different answers to score")
    log.info(
        "DPO on %d pairs, %d held out, %d lines skipped %s, device %s",
        len(train_encoded),
        len(val_encoded),
        sum(data.skipped.values()),
        dict(data.skipped),
        device_manager.get_device_info(),
    )

    seed_everything(seed)
    model, _ = load_final(sft_dir, device_manager.device)
    autocast = device_manager.autocast(config.mixed_precision)
    for pairs in (train_encoded, val_encoded):  # val as its scoring batches: exact ties
        attach_reference_logps(model, pairs, config.batch_size, device_manager.device, autocast)
    pack_width = config.seq_len if config.packing else None
    dist_env = device_manager.dist
    train_batches = PreferenceBatches(
        train_encoded, config.batch_size, seed, pack_width, dist_env.rank, dist_env.world_size
    )
    fingerprint = run_fingerprint(
        dpo=run_defining(config),
        seed=seed,
        sft=sha256_file(sft_dir / "model.safetensors"),
        data=sha256_file(data_path),
    )
    token_bytes = token_byte_lengths(tokenizer_path)
    spec = RunSpec(
        stage="dpo",
        config=config,
        seed=seed,
        fingerprint=fingerprint,
        output_dir=output_dir,
        checkpoint_dir=checkpoint_dir,
        tokenizer_path=tokenizer_path,
        params={"dpo": dataclasses.asdict(config), "sft": str(sft_dir), "data": str(data_path)},
        lineage={**pretrained_lineage(sft_dir), "tokenizer_sha256": sha256_file(tokenizer_path)},
        summary={
            "train_pairs": len(train_encoded),
            "val_pairs": len(val_encoded),
            "skipped_lines": dict(data.skipped),
            "beta": config.beta,
            "label_smoothing": config.label_smoothing,
        },
        compare_with_start=True,
        objective=DPOObjective(config.beta, config.label_smoothing, token_bytes),
        token_bytes=token_bytes,
        snakemake_job=snakemake_job,
    )
    metrics = train_stage(
        spec,
        model,
        train_batches,
        lambda: eval_pair_batches(val_encoded, config.batch_size, config.eval_batches),
        device_manager,
        tracking,
    )
    log.info(
        "held-out reward accuracy %.3f (reference %.3f), prefers the chosen answer %.3f "
        "(reference %.3f)",
        metrics["val_reward_accuracy"],
        metrics["base_val_reward_accuracy"],
        metrics["val_preference_accuracy"],
        metrics["base_val_preference_accuracy"],
    )
    device_manager.shutdown()
    return metrics


@dataclass
class DPOJob:
    """The arguments of `run_dpo`, as data that a torchrun worker reads back from JSON."""

    sft_dir: str
    data_path: str
    output_dir: str
    config: DPOConfig
    seed: int
    tracking: TrackingConfig
    checkpoint_dir: str | None = None
    threads: int | None = None
    snakemake_job: str | None = None


def launch_dpo(job: DPOJob, log_path: str | os.PathLike | None = None) -> dict:
    """Run `job` here or under torchrun (`launch_stage`); its metrics."""
    return launch_stage("dpo", run_dpo, job, job.config, log_path)


if __name__ == "__main__":
    sys.exit(worker_main("helox.tune.dpo", DPOJob, run_dpo))
