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
from functools import partial
from pathlib import Path

from helox.common.io import sha256_file
from helox.model.config import ModelConfig
from helox.model.folder import load_final
from helox.model.network import create_model_from_config
from helox.tokens.loader import TokenStream, eval_batches, unigram_baseline
from helox.tokens.mixture import mixed_batches
from helox.tokens.vocab import load_tokenizer
from helox.train.checkpoint import micro_batches_per_step, run_defining, run_fingerprint
from helox.train.config import TrainingConfig
from helox.train.launch import launch_stage, stage_job, worker_main
from helox.train.loop import seed_everything
from helox.train.metrics import token_byte_lengths
from helox.train.stage import RunSpec, StageRun, train_stage
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
    weights: dict[str, float] | None = None,
) -> dict:
    """Train a model on the manifest's train split and write `output_dir`: from scratch, or
    continuing the final folder `init_dir` (e.g. an imported model; `model_config` is then
    that folder's). Each batch draws its rows from the manifest's sources by `weights` (the
    `corpus.sources` weights by name; None: their natural proportions).

    Resumes from `checkpoint_dir` (default: `checkpoints/` beside `output_dir`) when a
    killed run with the same configs, seed and shards left a checkpoint there.
    Under torchrun every process calls this; rank 0 writes. Returns the metrics also
    written to `output_dir/metrics.json`. `snakemake_job` names the job in the tracking tags.
    """
    run = StageRun(
        output_dir, training_config, seed, tracking, checkpoint_dir, threads, snakemake_job
    )
    device_manager = run.start_devices()
    dist = device_manager.dist
    manifest_path = Path(manifest_path)

    val_stream = TokenStream(manifest_path, "val")
    if init_dir:
        init_dir = Path(init_dir)
        model, model_config = load_final(init_dir)
    model_config = resolve_vocab_size(model_config, val_stream.vocab_size)
    tokenizer = load_tokenizer(tokenizer_path)
    token_bytes = token_byte_lengths(tokenizer)
    if len(token_bytes) < val_stream.vocab_size:
        raise ValueError(
            f"{tokenizer_path} has {len(token_bytes)} pieces but {manifest_path} was written "
            f"with a vocabulary of {val_stream.vocab_size}; rebuild the shards"
        )
    seq_len, batch_size = training_config.seq_len, training_config.batch_size
    train_batches = mixed_batches(
        manifest_path, weights, seq_len, batch_size, seed, dist.rank, dist.world_size
    )
    if dist.is_main:
        rows = training_config.total_steps * micro_batches_per_step(training_config) * batch_size
        train_batches.planned_epochs(rows)
    val_stream.num_windows(seq_len)  # a val split too short to score fails now, not after training
    val_batches = partial(eval_batches, val_stream, seq_len, batch_size)
    manifest_sha256 = sha256_file(manifest_path)
    start = {"init": sha256_file(init_dir / "model.safetensors")} if init_dir else {}
    fingerprint = run_fingerprint(
        model=dataclasses.asdict(model_config),
        training=run_defining(training_config),
        seed=seed,
        manifest=manifest_sha256,
        mixture=train_batches.shares_by_source(),
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
        f"{train_batches.available_tokens():,}",
        f"{val_stream.num_tokens:,}",
        device_manager.get_device_info(),
    )
    unigram = unigram_baseline(manifest_path) if dist.is_main else math.nan
    spec = RunSpec(
        fingerprint=fingerprint,
        tokenizer=tokenizer,
        params={
            "model": dataclasses.asdict(model_config),
            "training": dataclasses.asdict(training_config),
            "manifest": str(manifest_path),
            "parameters": parameters,
            "init": str(init_dir or ""),
            "mixture": train_batches.shares_by_source(),
        },
        lineage={
            "manifest_sha256": manifest_sha256,
            "tokenizer_sha256": tokenizer.sha256,
            **({"init_sha256": start["init"]} if init_dir else {}),
        },
        summary={
            "unigram_val_loss": unigram,
            "parameters": parameters,
            "flops_per_token": model.flops_per_token(seq_len),
        },
        result="val loss %(val_loss).4f (perplexity %(val_perplexity).2f, %(val_bpb).4f bits per "
        "byte) vs unigram baseline %(unigram_val_loss).4f",
        baselines={"unigram_loss": unigram},
        token_bytes=token_bytes,
        after_training=lambda: {"sources": train_batches.drawn_summary()},
    )
    return train_stage(run, spec, model, train_batches, val_batches, device_manager)


PretrainJob = stage_job("PretrainJob", run_pretrain)
launch_pretrain = launch_stage  # what the rule calls: a PretrainJob here or under torchrun

if __name__ == "__main__":
    sys.exit(worker_main(PretrainJob))
