"""Step checkpoints for exact resume, and the self-contained `final/` model folder.

A step checkpoint `<checkpoint_dir>/step_N/` holds `model.safetensors`,
`optimizer.safetensors` (AdamW's moments and step counts, keyed by parameter name),
`rng.safetensors`, `state.json` (step, schedule, data position, Python/NumPy RNG,
progress), `config.json` (model and training config, run fingerprint) and, written
last, `COMPLETE` with every file's size and SHA-256. The folder is built under a
temporary name, fsynced, then renamed. Nothing is pickled.

Tensors are saved whole, whatever the parallelism: under FSDP every process takes part
in gathering them and rank 0 writes, so a run saved under DDP resumes under FSDP and
the other way round.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from helox.config import ModelConfig, TrainingConfig, section_from_dict
from helox.export import (
    CHAT_STAGES,
    NOT_LLAMA_KEY,
    folder_config,
    model_config_fields,
    tokenizer_files,
)
from helox.io import atomic_path, fsync_dir, read_json, sha256_file, write_json
from helox.model import HeloxLM, create_model_from_config

log = logging.getLogger(__name__)

MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
RNG_FILE = "rng.safetensors"
STATE_FILE = "state.json"
CONFIG_FILE = "config.json"
COMPLETE_FILE = "COMPLETE"
CHECKPOINT_FILES = (MODEL_FILE, OPTIMIZER_FILE, RNG_FILE, STATE_FILE, CONFIG_FILE)
STEP_DIR = re.compile(r"step_(\d+)")
GATHER = StateDictOptions(full_state_dict=True, cpu_offload=True)
SCATTER = StateDictOptions(full_state_dict=True, strict=False)

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
    }
)


class ConfigMismatchError(ValueError):
    """A checkpoint was saved for a model whose configuration differs from the current one."""


def run_fingerprint(**parts: Any) -> str:
    """A short stable hash of everything that decides a run (configs, seed, data hash)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_defining(config: TrainingConfig) -> dict[str, Any]:
    """The training fields that decide what a run computes (all but RESUMABLE_FIELDS)."""
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in RESUMABLE_FIELDS}


def is_main_process() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


# ---------------------------------------------------------------------------- tensors


def model_tensors(model: HeloxLM) -> dict[str, Tensor]:
    """Whole tensors on CPU, without a tied `lm_head.weight`; every process must call it,
    and under FSDP only rank 0 gets them (the others get an empty dict)."""
    tensors = {
        name: tensor.contiguous()
        for name, tensor in get_model_state_dict(model, options=GATHER).items()
    }
    if model.config.tie_word_embeddings:
        tensors.pop("lm_head.weight", None)
    return tensors


def load_model_tensors(model: HeloxLM, path: Path) -> None:
    """Load whole tensors from `path` into `model`, sharding them under FSDP."""
    tensors = load_file(path)
    tied = {"lm_head.weight"} if model.config.tie_word_embeddings else set()
    expected = set(model.state_dict())
    missing, unexpected = expected - set(tensors) - tied, set(tensors) - expected
    if missing or unexpected:
        raise ValueError(
            f"{path}: tensors do not fit the model (missing {sorted(missing)}, "
            f"unexpected {sorted(unexpected)})"
        )
    set_model_state_dict(model, tensors, options=SCATTER)


def optimizer_tensors(model: HeloxLM, optimizer: torch.optim.Optimizer) -> dict[str, Tensor]:
    """Optimizer state as `<parameter name>.<state key>` tensors; every process must call it."""
    state = get_optimizer_state_dict(model, optimizer, options=GATHER).get("state", {})
    return {
        f"{name}.{key}": value.contiguous()
        for name, values in state.items()
        for key, value in values.items()
    }


def load_optimizer_tensors(model: HeloxLM, optimizer: torch.optim.Optimizer, path: Path) -> None:
    """Restore the optimizer's state from `path`; its hyperparameters stay as configured."""
    state: dict[str, dict[str, Tensor]] = {}
    for flat_name, value in load_file(path).items():
        name, key = flat_name.rsplit(".", 1)
        state.setdefault(name, {})[key] = value
    names = {id(param): name for name, param in model.named_parameters()}
    groups = [
        {
            **{k: v for k, v in group.items() if k != "params"},
            "params": [names[id(p)] for p in group["params"]],
        }
        for group in optimizer.param_groups
    ]
    set_optimizer_state_dict(
        model, optimizer, {"state": state, "param_groups": groups}, options=SCATTER
    )


def capture_rng_state() -> tuple[dict, dict[str, Tensor]]:
    """Python and NumPy generator states as JSON, torch's (CPU and this GPU) as tensors."""
    version, mt_state, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    json_state = {
        "python": [version, list(mt_state), gauss],
        "numpy": [name, keys.tolist(), pos, has_gauss, cached],
    }
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["torch_cuda"] = torch.cuda.get_rng_state()
    return json_state, tensors


def restore_rng_state(json_state: dict, tensors: dict[str, Tensor]) -> None:
    """Set every generator to the saved states; each process's GPU takes rank 0's."""
    version, mt_state, gauss = json_state["python"]
    random.setstate((version, tuple(mt_state), gauss))
    name, keys, pos, has_gauss, cached = json_state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["torch_cpu"])
    if "torch_cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["torch_cuda"])


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _seal(folder: Path, manifest: dict) -> None:
    """fsync every file, then write the COMPLETE marker with their sizes and digests."""
    files = sorted(p for p in folder.iterdir() if p.is_file())
    for path in files:
        _fsync(path)
    digests = {p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)} for p in files}
    write_json(folder / COMPLETE_FILE, {**manifest, "files": digests})
    fsync_dir(folder)


# ---------------------------------------------------------------------------- step checkpoints


def step_dirs(checkpoint_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """Every `step_N` folder, oldest first, complete or not."""
    root = Path(checkpoint_dir)
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = STEP_DIR.fullmatch(path.name)
        if match and path.is_dir():
            found.append((int(match.group(1)), path))
    return sorted(found)


def checkpoint_problem(path: Path, verify_contents: bool = True) -> str | None:
    """Why `path` cannot be resumed from (no marker, a missing, truncated or altered file),
    or None; without `verify_contents` the files' digests are not recomputed."""
    marker = path / COMPLETE_FILE
    if not marker.is_file():
        return "no COMPLETE marker (interrupted while saving)"
    try:
        recorded = read_json(marker)["files"]
        for name in CHECKPOINT_FILES:
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
        with safe_open(path / MODEL_FILE, framework="pt") as handle:
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

    Every process must call it; rank 0 alone writes.
    """
    target = Path(checkpoint_dir) / f"step_{step}"
    weights, moments = model_tensors(model), optimizer_tensors(model, optimizer)
    if not is_main_process():
        return target
    rng_json, rng_tensors = capture_rng_state()
    with atomic_path(target) as tmp:
        tmp.mkdir()
        save_file(weights, tmp / MODEL_FILE)
        save_file(moments, tmp / OPTIMIZER_FILE)
        save_file(rng_tensors, tmp / RNG_FILE)
        state = {
            "step": step,
            "scheduler": {"step": step},
            "loader": loader_state,
            "progress": progress,
            "rng": rng_json,
        }
        write_json(tmp / STATE_FILE, state)
        write_json(
            tmp / CONFIG_FILE,
            {
                "model": dataclasses.asdict(model.config),
                "training": dataclasses.asdict(training_config),
                "fingerprint": fingerprint,
            },
        )
        _seal(tmp, {"step": step})
    prune_checkpoints(checkpoint_dir, training_config.save_total_limit)
    return target


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
    load_model_tensors(model, path / MODEL_FILE)
    if optimizer is not None:
        load_optimizer_tensors(model, optimizer, path / OPTIMIZER_FILE)
    state = read_json(path / STATE_FILE)
    restore_rng_state(state["rng"], load_file(path / RNG_FILE))
    return state


# ---------------------------------------------------------------------------- final model folder


def save_final(
    folder: str | os.PathLike,
    model: HeloxLM,
    model_config: ModelConfig,
    tokenizer_path: str | os.PathLike,
    metrics: dict,
) -> Path:
    """Write `model.safetensors`, `config.json`, `tokenizer.model`, `metrics.json` and the
    Hugging Face tokenizer and generation configs, atomically.

    The folder loads in transformers as `LlamaForCausalLM` when the model is expressible as
    one (see helox.export). Every process must call it; rank 0 alone writes.
    """
    folder = Path(folder)
    weights = model_tensors(model)
    if not is_main_process():
        return folder
    config_json = folder_config(model_config)
    if NOT_LLAMA_KEY in config_json:
        log.warning("%s will not load in transformers: %s", folder, config_json[NOT_LLAMA_KEY])
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        save_file(weights, tmp / MODEL_FILE, metadata={"format": "pt"})
        write_json(tmp / CONFIG_FILE, config_json)
        shutil.copyfile(tokenizer_path, tmp / "tokenizer.model")
        for name, content in tokenizer_files(chat=metrics.get("stage") in CHAT_STAGES).items():
            write_json(tmp / name, content)
        write_json(tmp / "metrics.json", metrics)
        for path in tmp.iterdir():
            _fsync(path)
        fsync_dir(tmp)
    return folder


def load_final(
    folder: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[HeloxLM, ModelConfig]:
    """Rebuild the model saved by `save_final`, in eval mode on `device`."""
    folder = Path(folder)
    where = str(folder / CONFIG_FILE)
    fields = model_config_fields(read_json(folder / CONFIG_FILE), where)
    config = section_from_dict(ModelConfig, fields, where)
    model = create_model_from_config(config).to(device)
    load_model_tensors(model, folder / MODEL_FILE)
    return model.eval(), config
