"""Pretraining: token shards + model and training config → `final/` model folder."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

from helox.config import ModelConfig, TrackingConfig, TrainingConfig
from helox.data.loader import PackedBatches, TokenStream, eval_batches, unigram_baseline
from helox.io import sha256_file
from helox.model import create_model_from_config
from helox.train.checkpoint import run_fingerprint, save_final
from helox.train.device import DeviceManager
from helox.train.loop import seed_everything, train
from helox.train.tracking import Tracker

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
) -> dict:
    """Train a model from scratch on the manifest's train split and write `output_dir`.

    Resumes from `checkpoint_dir` (default: `checkpoints/` beside `output_dir`) when a
    killed run with the same configs, seed and shards left a checkpoint there.
    Returns the metrics also written to `output_dir/metrics.json`.
    """
    manifest_path, output_dir = Path(manifest_path), Path(output_dir)
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else output_dir.parent / "checkpoints"
    device_manager = DeviceManager(training_config.device, threads)
    device_manager.init_distributed()
    dist = device_manager.dist

    train_stream = TokenStream(manifest_path, "train")
    val_stream = TokenStream(manifest_path, "val")
    model_config = resolve_vocab_size(model_config, train_stream.vocab_size)
    seq_len, batch_size = training_config.seq_len, training_config.batch_size
    train_batches = PackedBatches(
        train_stream, seq_len, batch_size, seed, rank=dist.rank, world_size=dist.world_size
    )
    val_stream.num_windows(seq_len)  # a val split too short to score fails now, not after training
    fingerprint = run_fingerprint(
        model=dataclasses.asdict(model_config),
        training=dataclasses.asdict(training_config),
        seed=seed,
        manifest=sha256_file(manifest_path),
    )

    seed_everything(seed)
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
    params = {
        "model": dataclasses.asdict(model_config),
        "training": dataclasses.asdict(training_config),
        "seed": seed,
        "manifest": str(manifest_path),
        "fingerprint": fingerprint,
        "parameters": parameters,
    }
    tracker_config = tracking if dist.is_main else dataclasses.replace(tracking, enabled=False)
    with Tracker(tracker_config, run_name="pretrain", params=params) as tracker:
        metrics = train(
            model,
            train_batches,
            lambda: eval_batches(val_stream, seq_len, batch_size),
            training_config,
            device_manager,
            checkpoint_dir,
            fingerprint,
            tracker,
        )
        unigram = unigram_baseline(manifest_path)
        tracker.log_metrics({"val/unigram_loss": unigram}, metrics["steps"])

    metrics = {
        "stage": "pretrain",
        "val_loss": metrics["val_loss"],
        "val_perplexity": metrics["val_perplexity"],
        "unigram_val_loss": unigram,
        "parameters": parameters,
        "flops_per_token": model.flops_per_token(seq_len),
        **{k: v for k, v in metrics.items() if k not in ("val_loss", "val_perplexity")},
    }
    if dist.is_main:
        log.info(
            "val loss %.4f (perplexity %.2f) vs unigram baseline %.4f",
            metrics["val_loss"],
            metrics["val_perplexity"],
            unigram,
        )
        save_final(output_dir, model, model_config, tokenizer_path, metrics)
    device_manager.shutdown()
    return metrics
