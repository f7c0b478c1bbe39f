"""Pretraining: token shards + model and training config → `final/` model folder.

`launch_pretrain` is what the rule calls: with `nproc` or `nodes` above 1 it starts
`nodes` × `nproc` processes through torchrun (helox.train.launch), each running
`python -m helox.train.pretrain JOB` on its own slice of every batch; otherwise it trains in
this process.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from helox.common.io import sha256_file
from helox.model.config import ModelConfig
from helox.model.device import DeviceManager
from helox.model.folder import load_final
from helox.model.network import create_model_from_config
from helox.tokens.loader import PackedBatches, TokenStream, eval_batches, unigram_baseline
from helox.train.checkpoint import run_defining, run_fingerprint
from helox.train.config import TrainingConfig
from helox.train.launch import job_from_json, job_to_json, launch_stage, worker_main
from helox.train.loop import seed_everything
from helox.train.metrics import token_byte_lengths
from helox.train.stage import RunSpec, train_stage
from helox.train.tracking import TrackingConfig

log = logging.getLogger(__name__)


def resolve_vocab_size(model_config: ModelConfig, manifest_vocab_size: int) -> ModelConfig:
    """Take the tokenizer's vocabulary size when the model leaves it unset; refuse one too small."""
    if not model_config.vocab_size:
        return dataclasses.replace(model_config, vocab_size=manifest_vocab_size)
    if model_config.vocab_size < manifest_vocab_size:
        raise ValueError(
            f"model.vocab_size {model_config.vocab_size} is smaller than the tokenizer's "
            f"vocabulary of {manifest_vocab_size}; raise it or set it to null"
        )
    return model_config


def run_pretrain(
    manifest_path: str | os.PathLike,
    tokenizer_path: str | os.PathLike,
    output_dir: str | os.PathLike,
    model_config: ModelConfig,
    training_config: TrainingConfig,
    seed: int,
    tracking: TrackingConfig,
    checkpoint_dir: str | os.PathLike | None = None,
    threads: int | None = None,
    snakemake_job: str | None = None,
    init_dir: str | os.PathLike | None = None,
) -> dict:
    """Train a model on the manifest's train split and write `output_dir`: from scratch, or
    continuing the final folder `init_dir` (e.g. an imported Llama; `model_config` is then
    that folder's).

    Resumes from `checkpoint_dir` (default: `checkpoints/` beside `output_dir`) when a
    killed run with the same configs, seed and shards left a checkpoint there.
    Under torchrun every process calls this; rank 0 writes. Returns the metrics also
    written to `output_dir/metrics.json`. `snakemake_job` names the job in the tracking tags.
    """
    manifest_path, output_dir = Path(manifest_path), Path(output_dir)
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else output_dir.parent / "checkpoints"
    device_manager = DeviceManager(training_config.device, threads)
    device_manager.init_distributed()
    dist = device_manager.dist

    train_stream = TokenStream(manifest_path, "train")
    val_stream = TokenStream(manifest_path, "val")
    if init_dir:
        init_dir = Path(init_dir)
        model, model_config = load_final(init_dir)
    model_config = resolve_vocab_size(model_config, train_stream.vocab_size)
    token_bytes = token_byte_lengths(tokenizer_path)
    if len(token_bytes) < train_stream.vocab_size:
        raise ValueError(
            f"{tokenizer_path} has {len(token_bytes)} pieces but {manifest_path} was written "
            f"with a vocabulary of {train_stream.vocab_size}; rebuild the shards"
        )
    seq_len, batch_size = training_config.seq_len, training_config.batch_size
    train_batches = PackedBatches(
        train_stream, seq_len, batch_size, seed, rank=dist.rank, world_size=dist.world_size
    )
    val_stream.num_windows(seq_len)  # a val split too short to score fails now, not after training
    manifest_sha256 = sha256_file(manifest_path)
    start = {"init": sha256_file(init_dir / "model.safetensors")} if init_dir else {}
    fingerprint = run_fingerprint(
        model=dataclasses.asdict(model_config),
        training=run_defining(training_config),
        seed=seed,
        manifest=manifest_sha256,
        **start,
    )

    seed_everything(seed)
    if not init_dir:
        model = create_model_from_config(model_config)
    parameters = model.num_parameters()
    log.info(
        "pretraining %d parameters on %s (%s tokens in train, %s in val), device %s",
        parameters,
        manifest_path,
        f"{train_stream.num_tokens:,}",
        f"{val_stream.num_tokens:,}",
        device_manager.get_device_info(),
    )
    unigram = unigram_baseline(manifest_path) if dist.is_main else math.nan
    spec = RunSpec(
        stage="pretrain",
        config=training_config,
        seed=seed,
        fingerprint=fingerprint,
        output_dir=output_dir,
        checkpoint_dir=checkpoint_dir,
        tokenizer_path=Path(tokenizer_path),
        params={
            "model": dataclasses.asdict(model_config),
            "training": dataclasses.asdict(training_config),
            "manifest": str(manifest_path),
            "parameters": parameters,
            "init": str(init_dir or ""),
        },
        lineage={
            "manifest_sha256": manifest_sha256,
            "tokenizer_sha256": sha256_file(tokenizer_path),
            **({"init_sha256": start["init"]} if init_dir else {}),
        },
        summary={
            "unigram_val_loss": unigram,
            "parameters": parameters,
            "flops_per_token": model.flops_per_token(seq_len),
        },
        baselines={"unigram_loss": unigram},
        token_bytes=token_bytes,
        snakemake_job=snakemake_job,
    )
    metrics = train_stage(
        spec,
        model,
        train_batches,
        lambda: eval_batches(val_stream, seq_len, batch_size),
        device_manager,
        tracking,
    )
    if dist.is_main:
        log.info(
            "val loss %.4f (perplexity %.2f, %.4f bits per byte) vs unigram baseline %.4f",
            metrics["val_loss"],
            metrics["val_perplexity"],
            metrics["val_bpb"],
            unigram,
        )
    device_manager.shutdown()
    return metrics


# ---------------------------------------------------------------------------- several processes


@dataclass
class PretrainJob:
    """The arguments of `run_pretrain`, as data that a torchrun worker reads back from JSON."""

    manifest_path: str
    tokenizer_path: str
    output_dir: str
    model_config: ModelConfig
    training_config: TrainingConfig
    seed: int
    tracking: TrackingConfig
    checkpoint_dir: str | None = None
    threads: int | None = None
    snakemake_job: str | None = None
    init_dir: str | None = None

    def to_json(self) -> str:
        return job_to_json(self)

    @classmethod
    def from_json(cls, text: str) -> PretrainJob:
        return job_from_json(cls, text)


def launch_pretrain(job: PretrainJob, log_path: str | os.PathLike | None = None) -> dict:
    """Run `job` here or under torchrun (`launch_stage`); its metrics."""
    return launch_stage("pretrain", run_pretrain, job, job.training_config, log_path)


if __name__ == "__main__":
    sys.exit(worker_main("helox.train.pretrain", PretrainJob, run_pretrain))
