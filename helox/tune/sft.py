"""Supervised fine-tuning: a pretrained folder + instruction data → an instruction-tuned folder.

`launch_sft` is what the rule calls: like pretraining, with `nproc` or `nodes` above 1 it
starts that many torchrun processes (helox.train.launch), each training on its slice of
every batch; otherwise it trains in this process.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from helox.common.io import sha256_file
from helox.model.device import DeviceManager
from helox.model.folder import load_final
from helox.tokens.vocab import load_tokenizer
from helox.train.checkpoint import run_defining, run_fingerprint
from helox.train.config import TrainingConfig
from helox.train.launch import launch_stage, worker_main
from helox.train.lineage import pretrained_lineage
from helox.train.loop import seed_everything
from helox.train.metrics import token_byte_lengths
from helox.train.stage import RunSpec, train_stage
from helox.train.tracking import TrackingConfig
from helox.tune.sft_data import (
    SFTBatches,
    encode_examples,
    eval_batches,
    held_out_flags,
    padding_fraction,
    read_instruction_data,
)

log = logging.getLogger(__name__)


@dataclass
class SFTConfig(TrainingConfig):
    SECTION: ClassVar[str] = "sft"

    data: str = ""  # JSONL of {"instruction", "response"}; "" = pairs from the standard library
    max_pairs: int = 4000  # derived pairs
    max_response_chars: int = 2000
    val_fraction: float = 0.05
    packing: bool = True  # several conversations per row; attention never crosses them


def run_sft(
    pretrained_dir: str | os.PathLike,
    data_path: str | os.PathLike,
    output_dir: str | os.PathLike,
    config: SFTConfig,
    seed: int,
    tracking: TrackingConfig,
    checkpoint_dir: str | os.PathLike | None = None,
    threads: int | None = None,
    tokenizer_path: str | os.PathLike | None = None,
    snakemake_job: str | None = None,
) -> dict:
    """Fine-tune on assistant tokens only; record held-out response loss before and after.

    The tracking run nests under the pipeline run of the pretrained folder. Under torchrun
    every process calls this, each training on its slice of every batch; rank 0 writes.
    """
    pretrained_dir, output_dir = Path(pretrained_dir), Path(output_dir)
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else output_dir.parent / "checkpoints"
    tokenizer_path = Path(tokenizer_path or pretrained_dir / "tokenizer.model")
    device_manager = DeviceManager(config.device, threads)
    device_manager.init_distributed()
    dist = device_manager.dist

    data = read_instruction_data(data_path)
    processor = load_tokenizer(tokenizer_path)
    held_out = held_out_flags(data.items, seed, config.val_fraction)
    train_examples = encode_examples(
        [c for c, v in zip(data.items, held_out, strict=True) if not v],
        processor,
        config.seq_len,
        data.skipped,
    )
    val_examples = encode_examples(
        [c for c, v in zip(data.items, held_out, strict=True) if v],
        processor,
        config.seq_len,
        data.skipped,
    )
    if not val_examples:
        raise ValueError(f"{data_path}: no held-out example has a response to score")
    log.info(
        "SFT on %d examples, %d held out, %d lines skipped %s, device %s",
        len(train_examples),
        len(val_examples),
        sum(data.skipped.values()),
        dict(data.skipped),
        device_manager.get_device_info(),
    )

    train_batches = SFTBatches(
        train_examples,
        config.batch_size,
        seed,
        config.seq_len if config.packing else None,
        rank=dist.rank,
        world_size=dist.world_size,
    )
    padding = {
        "padding_fraction": padding_fraction(train_batches),
        "padding_fraction_unpacked": padding_fraction(
            SFTBatches(train_examples, config.batch_size, seed)
        ),
    }
    log.info(
        "padding: %.1f%% of training slots (%.1f%% without packing)",
        100 * padding["padding_fraction"],
        100 * padding["padding_fraction_unpacked"],
    )

    seed_everything(seed)
    model, _ = load_final(pretrained_dir, device_manager.device)
    fingerprint = run_fingerprint(
        sft=run_defining(config),
        seed=seed,
        pretrained=sha256_file(pretrained_dir / "model.safetensors"),
        data=sha256_file(data_path),
    )
    spec = RunSpec(
        stage="sft",
        config=config,
        seed=seed,
        fingerprint=fingerprint,
        output_dir=output_dir,
        checkpoint_dir=checkpoint_dir,
        tokenizer_path=tokenizer_path,
        params={
            "sft": dataclasses.asdict(config),
            "pretrained": str(pretrained_dir),
            "data": str(data_path),
        },
        lineage={
            **pretrained_lineage(pretrained_dir),
            "tokenizer_sha256": sha256_file(tokenizer_path),
        },
        summary={
            "train_examples": len(train_examples),
            "val_examples": len(val_examples),
            "skipped_lines": dict(data.skipped),
            **padding,
        },
        compare_with_start=True,
        token_bytes=token_byte_lengths(tokenizer_path),
        snakemake_job=snakemake_job,
    )
    metrics = train_stage(
        spec,
        model,
        train_batches,
        lambda: eval_batches(val_examples, config.batch_size, config.eval_batches),
        device_manager,
        tracking,
    )
    log.info(
        "held-out response loss %.4f after SFT, %.4f before",
        metrics["val_loss"],
        metrics["base_val_loss"],
    )
    device_manager.shutdown()
    return metrics


@dataclass
class SFTJob:
    """The arguments of `run_sft`, as data that a torchrun worker reads back from JSON."""

    pretrained_dir: str
    data_path: str
    output_dir: str
    config: SFTConfig
    seed: int
    tracking: TrackingConfig
    checkpoint_dir: str | None = None
    threads: int | None = None
    tokenizer_path: str | None = None
    snakemake_job: str | None = None


def launch_sft(job: SFTJob, log_path: str | os.PathLike | None = None) -> dict:
    """Run `job` here or under torchrun (`launch_stage`); its metrics."""
    return launch_stage("sft", run_sft, job, job.config, log_path)


if __name__ == "__main__":
    sys.exit(worker_main("helox.tune.sft", SFTJob, run_sft))
