"""Step checkpoints for exact resume (the `final/` model folder is helox.model.folder).

A step checkpoint `<checkpoint_dir>/step_N/` holds `model.safetensors` (the weights that
train: all of them, or only a LoRA stage's adapters, whose frozen base the stage reloads from
the folder it tunes), `optimizer.safetensors` (the optimizer's state tensors, keyed by
parameter name), `rng.safetensors`, `state.json` (step, schedule, data position, Python/NumPy
RNG, progress), `config.json` (model and training config, run fingerprint) and, written
last, `COMPLETE` with every file's size and SHA-256. The folder is built under a
temporary name, fsynced, then renamed. Nothing is pickled.

Under DDP or in one process, tensors are saved whole (rank 0 writes). Under FSDP no
process gathers the full state: each writes its own shards of the model and optimizer state
into `shards/` with torch.distributed.checkpoint, as safetensors files whose metadata
records each shard's offsets (nothing pickled), in place of `model.safetensors` and
`optimizer.safetensors`; every process builds the same temporary folder, and rank 0 adds
the rest, seals it (the shards' digests too) and renames it. Either kind resumes under any
parallelism and any number of processes, and in one process (e.g. to write `final/`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from helox.common.distributed import DistributedEnv
from helox.common.io import atomic_path, fsync_dir, fsync_file, read_json, sha256_file, write_json
from helox.model.config import ModelConfig
from helox.model.network import HeloxLM
from helox.model.tensors import load_model_tensors, model_tensors
from helox.train.config import TrainingConfig
from helox.train.step_folders import step_dirs
from helox.train.tensors import (
    SHARDS_DIR,
    capture_rng_state,
    load_optimizer_tensors,
    load_shards,
    optimizer_tensors,
    restore_rng_state,
    write_shards,
)

log = logging.getLogger(__name__)

MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
RNG_FILE = "rng.safetensors"
STATE_FILE = "state.json"
CONFIG_FILE = "config.json"
COMPLETE_FILE = "COMPLETE"
CHECKPOINT_FILES = (MODEL_FILE, OPTIMIZER_FILE, RNG_FILE, STATE_FILE, CONFIG_FILE)
RUN_FILES = (RNG_FILE, STATE_FILE, CONFIG_FILE)  # in every checkpoint, whole or sharded

# Training knobs that change how a run is carried out or reported, not what it computes:
# a checkpoint resumes across edits of these.
RESUMABLE_FIELDS = frozenset(
    {
        "log_steps",
        "eval_steps",
        "eval_batches",
        "save_steps",
        "save_total_limit",
        "max_consecutive_skips",
        "device",
        "mixed_precision",
        "compile",
        "gradient_checkpointing",
        "fsdp",
        "rendezvous_timeout",
    }
)


# How a step's micro-batches are spread over processes and accumulation (run_defining).
LAYOUT_FIELDS = frozenset({"nproc", "nodes", "gradient_accumulation_steps"})


class ConfigMismatchError(ValueError):
    """A checkpoint was saved for a model whose configuration differs from the current one."""


def run_fingerprint(**parts: Any) -> str:
    """A short stable hash of everything that decides a run (configs, seed, data hash)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_defining(config: TrainingConfig) -> dict[str, Any]:
    """The training fields that decide what a run computes (all but RESUMABLE_FIELDS). The
    processes and gradient accumulation count only as the micro-batches a step takes: every
    process reads its `batch_size` rows of one shared data order, so 2 processes × 2
    micro-batches, 4 × 1 and 1 × 4 train on the same batches of rows, and a run resumes on
    whichever keeps that product (a node lost, a larger allocation granted)."""
    defining = {
        k: v
        for k, v in dataclasses.asdict(config).items()
        if k not in RESUMABLE_FIELDS and k not in LAYOUT_FIELDS
    }
    return {**defining, "micro_batches_per_step": micro_batches_per_step(config)}


def micro_batches_per_step(config: TrainingConfig) -> int:
    """Micro-batches of `batch_size` rows in one optimizer step, over all processes."""
    return config.processes * config.gradient_accumulation_steps


def check_layout(saved: dict[str, Any], current: TrainingConfig, checkpoint_dir: Path) -> None:
    """Raise ConfigMismatchError where `saved` (a checkpoint's training config) took another
    number of micro-batches a step than `current`: most often a node lost or added with the
    accumulation left as it was, where deleting the run's checkpoints would lose it."""
    saved_config = dataclasses.replace(
        current, **{key: saved.get(key, 1) for key in sorted(LAYOUT_FIELDS)}
    )
    wanted, given = micro_batches_per_step(saved_config), micro_batches_per_step(current)
    if wanted == given:
        return
    processes = current.processes
    hint = (
        f"gradient_accumulation_steps: {wanted // processes} resumes it on {processes} "
        f"process{'es' * (processes > 1)}, or "
        if wanted % processes == 0
        else ""
    )
    raise ConfigMismatchError(
        f"the checkpoints in {checkpoint_dir} take {wanted} micro-batches a step (nodes "
        f"{saved_config.nodes} × nproc {saved_config.nproc} × gradient_accumulation_steps "
        f"{saved_config.gradient_accumulation_steps}); this config takes {given} (nodes "
        f"{current.nodes} × nproc {current.nproc} × gradient_accumulation_steps "
        f"{current.gradient_accumulation_steps}). Keep the product: {hint}delete "
        f"{checkpoint_dir} to start afresh"
    )


def _seal(folder: Path, manifest: dict) -> None:
    """fsync every file, then write the COMPLETE marker with their sizes and digests, keyed
    by their paths inside `folder`."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    for path in files:
        fsync_file(path)
    digests = {
        p.relative_to(folder).as_posix(): {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
        for p in files
    }
    write_json(folder / COMPLETE_FILE, {**manifest, "files": digests})
    for inner in {p.parent for p in files}:
        fsync_dir(inner)


# ---------------------------------------------------------------------------- step checkpoints


def checkpoint_problem(path: Path, verify_contents: bool = True) -> str | None:
    """Why `path` cannot be resumed from (no marker, a missing, truncated or altered file),
    or None; without `verify_contents` the files' digests are not recomputed."""
    marker = path / COMPLETE_FILE
    if not marker.is_file():
        return "no COMPLETE marker (interrupted while saving)"
    try:
        recorded = read_json(marker)["files"]
        shards = sorted(name for name in recorded if name.startswith(f"{SHARDS_DIR}/"))
        tensor_files = shards or [MODEL_FILE, OPTIMIZER_FILE]
        for name in (*tensor_files, *RUN_FILES):
            file = path / name
            if not file.is_file():
                return f"{name} is missing"
            expected = recorded[name]
            if file.stat().st_size != expected["bytes"]:
                return f"{name} has {file.stat().st_size} bytes, expected {expected['bytes']}"
            if verify_contents and sha256_file(file) != expected["sha256"]:
                return f"{name} does not match the SHA-256 recorded when it was saved"
        read_json(path / STATE_FILE)
        read_json(path / CONFIG_FILE)
        for name in shards or [MODEL_FILE]:
            with safe_open(path / name, framework="pt") as handle:
                handle.keys()
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as error:
        return f"unreadable: {error}"
    return None


def latest_checkpoint(checkpoint_dir: str | os.PathLike) -> Path | None:
    """The newest intact checkpoint, warning about and skipping broken ones."""
    for step, path in reversed(step_dirs(checkpoint_dir)):
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        log.warning("skipping checkpoint %s (step %d): %s", path, step, problem)
    return None


def _discard(path: Path) -> None:
    """Hide `path` under a leftover name in one rename, then delete it."""
    hidden = path.with_name(f".{path.name}.discarded.tmp")
    shutil.rmtree(hidden, ignore_errors=True)
    os.replace(path, hidden)
    shutil.rmtree(hidden)


def remove_checkpoints(checkpoint_dir: str | os.PathLike) -> None:
    """Delete every step checkpoint and leftover temporary folder in `checkpoint_dir`."""
    for _, path in step_dirs(checkpoint_dir):
        _discard(path)
    _remove_leftovers(checkpoint_dir)


def _remove_leftovers(checkpoint_dir: str | os.PathLike) -> None:
    """Delete temporary folders left by a save or a deletion that was killed midway."""
    for path in Path(checkpoint_dir).glob(".step_*.tmp"):
        shutil.rmtree(path, ignore_errors=True)


def prune_checkpoints(checkpoint_dir: str | os.PathLike, keep: int) -> None:
    """Keep the newest `keep` complete checkpoints; delete older ones and broken ones."""
    complete = []
    for _, path in step_dirs(checkpoint_dir):
        if checkpoint_problem(path, verify_contents=False) is None:
            complete.append(path)
        else:
            _discard(path)
    for path in complete[: max(0, len(complete) - keep)]:
        _discard(path)
    _remove_leftovers(checkpoint_dir)


def save_checkpoint(
    checkpoint_dir: str | os.PathLike,
    step: int,
    model: HeloxLM,
    optimizer: torch.optim.Optimizer,
    training_config: TrainingConfig,
    fingerprint: str,
    loader_state: dict,
    progress: dict,
) -> Path:
    """Write `step_<step>/` atomically, then prune to `save_total_limit` checkpoints.

    Every process must call it. Under FSDP every process writes its shards (see the module's
    docstring); otherwise rank 0 alone writes whole tensors.
    """
    target = Path(checkpoint_dir) / f"step_{step}"
    env = DistributedEnv.from_environ()
    state = {
        "step": step,
        "scheduler": {"step": step},
        "loader": loader_state,
        "progress": progress,
    }
    config = {
        "model": dataclasses.asdict(model.config),
        "training": dataclasses.asdict(training_config),
        "fingerprint": fingerprint,
    }
    if training_config.fsdp and env.is_distributed:
        tmp = target.with_name(f".{target.name}.shards.tmp")
        write_shards(tmp, model, optimizer)
        if not env.is_main:
            return target
        _write_run_files(tmp, state, config)
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(tmp, target)
        fsync_dir(target.parent)
    else:
        weights = model_tensors(model, trained_only=True)
        moments = optimizer_tensors(model, optimizer)
        if not env.is_main:
            return target
        with atomic_path(target) as tmp:
            tmp.mkdir()
            save_file(weights, tmp / MODEL_FILE)
            save_file(moments, tmp / OPTIMIZER_FILE)
            _write_run_files(tmp, state, config)
    prune_checkpoints(checkpoint_dir, training_config.save_total_limit)
    return target


def _write_run_files(folder: Path, state: dict, config: dict) -> None:
    """The RNG, state (with the RNG's JSON part) and config files beside the tensors, then
    the COMPLETE marker."""
    rng_json, rng_tensors = capture_rng_state()
    save_file(rng_tensors, folder / RNG_FILE)
    write_json(folder / STATE_FILE, {**state, "rng": rng_json})
    write_json(folder / CONFIG_FILE, config)
    _seal(folder, {"step": state["step"]})


def checkpoint_config(path: Path) -> dict:
    """The `config.json` of a step checkpoint: model, training and fingerprint."""
    return read_json(path / CONFIG_FILE)


def check_model_config(saved: dict, current: ModelConfig, where: Path) -> None:
    """Raise ConfigMismatchError naming each model key whose value differs; a key the
    checkpoint predates counts as its default."""
    current_fields = dataclasses.asdict(current)
    saved = {**dataclasses.asdict(ModelConfig()), **saved}
    differing = sorted(
        key for key in set(saved) | set(current_fields) if saved.get(key) != current_fields.get(key)
    )
    if differing:
        details = ", ".join(
            f"{key}: checkpoint {saved.get(key)!r} vs current {current_fields.get(key)!r}"
            for key in differing
        )
        raise ConfigMismatchError(f"{where} was saved for a different model ({details})")


def load_checkpoint(
    path: str | os.PathLike, model: HeloxLM, optimizer: torch.optim.Optimizer | None = None
) -> dict:
    """Load weights, optimizer and RNG state from `path`; return its state.json contents.

    Every process must call it.
    """
    path = Path(path)
    check_model_config(checkpoint_config(path)["model"], model.config, path)
    if (path / SHARDS_DIR).is_dir():
        load_shards(path, model, optimizer)
    else:
        load_model_tensors(model, path / MODEL_FILE, trained_only=True)
        if optimizer is not None:
            load_optimizer_tensors(model, optimizer, path / OPTIMIZER_FILE)
    state = read_json(path / STATE_FILE)
    restore_rng_state(state["rng"], load_file(path / RNG_FILE))
    return state
