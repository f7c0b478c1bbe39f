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
from functools import partial
from pathlib import Path

import torch

from helox.common.config_files import ConfigError
from helox.common.io import sha256_file
from helox.model.folder import load_final
from helox.model.lora import apply_lora
from helox.model.network import HeloxLM
from helox.model.token_rows import add_token_rows, check_vocabulary_fits
from helox.tokens.chat_setup import PreparedChat
from helox.train.checkpoint import run_defining, run_fingerprint
from helox.train.launch import launch_stage, stage_job, worker_main
from helox.train.lineage import tuned_lineage
from helox.train.loop import seed_everything
from helox.train.metrics import token_byte_lengths
from helox.train.stage import RunSpec, StageRun, train_stage
from helox.train.tracking import TrackingConfig
from helox.tune.config import SFTConfig, TuningConfig
from helox.tune.sft_data import (
    SFTBatches,
    describe_split,
    encode_examples,
    eval_batches,
    held_out_flags,
    padding_fraction,
    read_instruction_data,
)

log = logging.getLogger(__name__)


def fit_model_to(model: HeloxLM, prepared: PreparedChat, folder: Path) -> HeloxLM:
    """The model of `folder` with rows for the tokens `prepare_chat` added (the tokens before
    them set their start); refused where the tokenizer has more ids than it has rows."""
    if prepared.added_ids:
        return add_token_rows(model, prepared.added_ids, known=prepared.added_ids[0])
    check_vocabulary_fits(prepared.tokenizer, model.config.vocab_size, folder / "config.json")
    return model


def tuned_model(
    folder: Path, config: TuningConfig, prepared: PreparedChat, device: torch.device
) -> tuple[HeloxLM, dict]:
    """The model of `folder` to tune, on `device`, fitted to the tokens `prepared` added:
    whole, or frozen with `config.lora`'s adapters on it; and its parameters and those that
    train, for metrics.json. LoRA is refused where markers were added: their rows, frozen at
    one mean, would never tell the turns apart."""
    model = fit_model_to(load_final(folder, device)[0], prepared, folder)
    if config.lora is not None:
        if prepared.added_ids:
            raise ConfigError(
                f"config key {config.SECTION}.lora: {folder} brings no chat template, so "
                f"Helox's markers are added as new tokens, whose rows a LoRA stage keeps "
                f"frozen; fine-tune it whole first, or name a template whose markers the "
                f"tokenizer has ({config.SECTION}.chat_template)"
            )
        apply_lora(model, config.lora, f"{config.SECTION}.lora")
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return model, {"parameters": model.num_parameters(), "trained_parameters": trained}


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
    run = StageRun(output_dir, config, seed, tracking, checkpoint_dir, threads, snakemake_job)
    device_manager = run.start_devices()
    dist = device_manager.dist
    pretrained_dir = Path(pretrained_dir)
    prepared = config.prepare_chat(tokenizer_path or pretrained_dir, pretrained_dir)
    tokenizer = prepared.tokenizer

    data = read_instruction_data(data_path)
    held_out = held_out_flags(data.items, seed, config.val_fraction)
    train_examples = encode_examples(
        [c for c, v in zip(data.items, held_out, strict=True) if not v],
        prepared.chat,
        config.seq_len,
        data.skipped,
    )
    val_examples = encode_examples(
        [c for c, v in zip(data.items, held_out, strict=True) if v],
        prepared.chat,
        config.seq_len,
        data.skipped,
    )
    if not val_examples:
        raise ValueError(f"{data_path}: no held-out example has a response to score")
    val_batches = partial(
        eval_batches, val_examples, config.batch_size, config.eval_batches, tokenizer.pad
    )
    counts = describe_split("examples", train_examples, val_examples, data.skipped)
    log.info("SFT on %s, device %s", counts, device_manager.get_device_info())

    train_batches = SFTBatches(
        train_examples,
        config.batch_size,
        seed,
        config.seq_len if config.packing else None,
        rank=dist.rank,
        world_size=dist.world_size,
        pad_id=tokenizer.pad,
    )
    padding = {
        "padding_fraction": padding_fraction(train_batches),
        "padding_fraction_unpacked": padding_fraction(
            SFTBatches(train_examples, config.batch_size, seed, pad_id=tokenizer.pad)
        ),
    }
    log.info(
        "padding: %.1f%% of training slots (%.1f%% without packing)",
        100 * padding["padding_fraction"],
        100 * padding["padding_fraction_unpacked"],
    )

    seed_everything(seed)
    model, sizes = tuned_model(pretrained_dir, config, prepared, device_manager.device)
    fingerprint = run_fingerprint(
        sft=run_defining(config),
        seed=seed,
        pretrained=sha256_file(pretrained_dir / "model.safetensors"),
        data=sha256_file(data_path),
        chat_template=tokenizer.chat_template,
    )
    spec = RunSpec(
        fingerprint=fingerprint,
        tokenizer=tokenizer,
        params={
            "sft": dataclasses.asdict(config),
            "pretrained": str(pretrained_dir),
            "data": str(data_path),
        },
        lineage=tuned_lineage(pretrained_dir, tokenizer.sha256),
        summary={
            "train_examples": len(train_examples),
            "val_examples": len(val_examples),
            "skipped_lines": dict(data.skipped),
            **padding,
            **sizes,
        },
        result="held-out response loss %(val_loss).4f after SFT, %(base_val_loss).4f before",
        compare_with_start=True,
        token_bytes=token_byte_lengths(tokenizer),
        tuned_from=pretrained_dir,
    )
    return train_stage(run, spec, model, train_batches, val_batches, device_manager)


SFTJob = stage_job("SFTJob", run_sft)
launch_sft = launch_stage  # what the rule and the CLI call: an SFTJob here or under torchrun

if __name__ == "__main__":
    sys.exit(worker_main(SFTJob))
