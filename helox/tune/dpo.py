"""Preference tuning (DPO): an SFT folder + preference pairs → a preference-tuned folder.

The SFT model is the frozen reference. Its log-probability of every answer is computed
once, before training starts (the model being trained is still the reference then; with
`dpo.lora`, the frozen model with its adapters switched off), under the autocast training
uses, so no second copy of the model is held; a resumed run recomputes them the same way.
`launch_dpo` is what the rule calls: like SFT, with `nproc` or `nodes` above 1 it starts that
many torchrun processes, each computing its share of the reference log-probabilities and
training on its rows of every batch.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from functools import partial
from pathlib import Path

import torch
import torch.distributed as dist

from helox.common.io import sha256_file
from helox.model.lora import adapters_disabled
from helox.model.network import HeloxLM
from helox.train.checkpoint import run_defining, run_fingerprint
from helox.train.evaluate import Autocast, to_device
from helox.train.launch import launch_stage, stage_job, worker_main
from helox.train.lineage import tuned_lineage
from helox.train.loop import seed_everything
from helox.train.metrics import token_byte_lengths
from helox.train.preference import DPOObjective, sequence_log_probs
from helox.train.stage import RunSpec, StageRun, train_stage
from helox.train.tracking import TrackingConfig
from helox.tune.config import DPOConfig
from helox.tune.dpo_data import (
    EncodedPair,
    PreferenceBatches,
    encode_pairs,
    eval_pair_batches,
    read_preference_data,
    split_pairs,
)
from helox.tune.sft import tuned_model
from helox.tune.sft_data import describe_split

log = logging.getLogger(__name__)


@torch.no_grad()
def attach_reference_logps(
    model: HeloxLM,
    pairs: list[EncodedPair],
    batch_size: int,
    device: torch.device,
    autocast: Autocast,
    pad_id: int,
) -> None:
    """Set each pair's `reference` to the summed response log-probabilities under `model`
    with its LoRA adapters (if any) switched off: the model it tunes. Under several processes
    each scores every world-th batch and they sum what they found, so every process ends with
    the values one process would have computed."""
    model.eval()
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    found = torch.zeros(len(pairs), 2, dtype=torch.float64, device=device)
    for start in range(rank * batch_size, len(pairs), world * batch_size):
        chunk = pairs[start : start + batch_size]
        batch = next(eval_pair_batches(chunk, len(chunk), pad_id))
        input_ids, labels, extra = to_device(batch, device)
        sequence_ids = extra.pop("sequence_ids")
        with autocast, adapters_disabled(model):
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
    run = StageRun(output_dir, config, seed, tracking, checkpoint_dir, threads, snakemake_job)
    device_manager = run.start_devices()
    sft_dir = Path(sft_dir)
    prepared = config.prepare_chat(sft_dir, sft_dir)
    tokenizer = prepared.tokenizer

    data = read_preference_data(data_path)
    train_pairs, val_pairs = split_pairs(data.items, seed, config.val_fraction)
    train_encoded = encode_pairs(train_pairs, prepared.chat, config.seq_len, data.skipped)
    val_encoded = encode_pairs(val_pairs, prepared.chat, config.seq_len, data.skipped)
    if not val_encoded:
        raise ValueError(f"{data_path}: no held-out pair has two different answers to score")
    val_batches = partial(
        eval_pair_batches, val_encoded, config.batch_size, tokenizer.pad, config.eval_batches
    )
    counts = describe_split("pairs", train_encoded, val_encoded, data.skipped)
    log.info("DPO on %s, device %s", counts, device_manager.get_device_info())

    seed_everything(seed)
    model, sizes = tuned_model(sft_dir, config, prepared, device_manager.device)
    autocast = device_manager.autocast(config.mixed_precision)
    for pairs in (train_encoded, val_encoded):  # val as its scoring batches: exact ties
        attach_reference_logps(
            model, pairs, config.batch_size, device_manager.device, autocast, tokenizer.pad
        )
    pack_width = config.seq_len if config.packing else None
    dist_env = device_manager.dist
    train_batches = PreferenceBatches(
        train_encoded,
        config.batch_size,
        seed,
        pack_width,
        dist_env.rank,
        dist_env.world_size,
        pad_id=tokenizer.pad,
    )
    fingerprint = run_fingerprint(
        dpo=run_defining(config),
        seed=seed,
        sft=sha256_file(sft_dir / "model.safetensors"),
        data=sha256_file(data_path),
        chat_template=tokenizer.chat_template,
    )
    token_bytes = token_byte_lengths(tokenizer)
    spec = RunSpec(
        fingerprint=fingerprint,
        tokenizer=tokenizer,
        params={"dpo": dataclasses.asdict(config), "sft": str(sft_dir), "data": str(data_path)},
        lineage=tuned_lineage(sft_dir, tokenizer.sha256),
        summary={
            "train_pairs": len(train_encoded),
            "val_pairs": len(val_encoded),
            "skipped_lines": dict(data.skipped),
            "beta": config.beta,
            "label_smoothing": config.label_smoothing,
            **sizes,
        },
        result="held-out reward accuracy %(val_reward_accuracy).3f (reference "
        "%(base_val_reward_accuracy).3f), prefers the chosen answer "
        "%(val_preference_accuracy).3f (reference %(base_val_preference_accuracy).3f)",
        compare_with_start=True,
        token_bytes=token_bytes,
        objective=DPOObjective(config.beta, config.label_smoothing, token_bytes),
        tuned_from=sft_dir,
    )
    return train_stage(run, spec, model, train_batches, val_batches, device_manager)


DPOJob = stage_job("DPOJob", run_dpo)
launch_dpo = launch_stage  # what the rule and the CLI call: a DPOJob here or under torchrun

if __name__ == "__main__":
    sys.exit(worker_main(DPOJob))
