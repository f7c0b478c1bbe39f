"""Step checkpoints for exact resume, and the self-contained `final/` model folder.

A step checkpoint `<checkpoint_dir>/step_N/` holds `model.safetensors`, `optimizer.pt`
(tensors and plain Python only, read back with `weights_only=True`), `rng.safetensors`,
`state.json` (step, schedule, data position, Python/NumPy RNG, progress), `config.json`
(model and training config, run fingerprint) and, written last, `COMPLETE` listing every
file's size. The folder is built under a temporary name, fsynced, then renamed.
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
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

from helox.config import ModelConfig, TrainingConfig, section_from_dict
from helox.io import atomic_path, fsync_dir, read_json, write_json
from helox.model import HeloxLM, create_model_from_config

log = logging.getLogger(__name__)

MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
RNG_FILE = "rng.safetensors"
STATE_FILE = "state.json"
CONFIG_FILE = "config.json"
COMPLETE_FILE = "COMPLETE"
STEP_DIR = re.compile(r"step_(\d+)")
ARCHITECTURE = "helox"


class ConfigMismatchError(ValueError):
    """A checkpoint was saved for a model whose configuration differs from the current one."""


def run_fingerprint(**parts: Any) -> str:
    """A short stable hash of everything that decides a run (configs, seed, data hash)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------- tensors


def model_tensors(model: HeloxLM) -> dict[str, Tensor]:
    """The state dict as safetensors holds it: on CPU, without a tied `lm_head.weight`."""
    tensors = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        tensors.pop("lm_head.weight", None)
    return tensors


def load_model_tensors(model: HeloxLM, path: Path) -> None:
    tensors = load_file(path, device=str(next(model.parameters()).device))
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    tied = {"lm_head.weight"} if model.config.tie_word_embeddings else set()
    if set(missing) - tied or unexpected:
        raise ValueError(
            f"{path}: tensors do not fit the model (missing {sorted(set(missing) - tied)}, "
            f"unexpected {sorted(unexpected)})"
        )


def capture_rng_state() -> tuple[dict, dict[str, Tensor]]:
    """Python and NumPy generator states as JSON, torch's as tensors."""
    version, mt_state, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    json_state = {
        "python": [version, list(mt_state), gauss],
        "numpy": [name, keys.tolist(), pos, has_gauss, cached],
    }
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = state
    return json_state, tensors


def restore_rng_state(json_state: dict, tensors: dict[str, Tensor]) -> None:
    version, mt_state, gauss = json_state["python"]
    random.setstate((version, tuple(mt_state), gauss))
    name, keys, pos, has_gauss, cached = json_state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["torch_cpu"])
    cuda_states = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states)


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _seal(folder: Path, manifest: dict) -> None:
    """fsync every file, then write the COMPLETE marker listing their sizes."""
    files = sorted(p for p in folder.iterdir() if p.is_file())
    for path in files:
        _fsync(path)
    sizes = {p.name: p.stat().st_size for p in files}
    write_json(folder / COMPLETE_FILE, {**manifest, "files": sizes})
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


def checkpoint_problem(path: Path) -> str | None:
    """Why `path` cannot be resumed from (missing marker, truncated or unreadable file), or None."""
    marker = path / COMPLETE_FILE
    if not marker.is_file():
        return "no COMPLETE marker (interrupted while saving)"
    try:
        sizes = read_json(marker)["files"]
        for name in (MODEL_FILE, OPTIMIZER_FILE, RNG_FILE, STATE_FILE, CONFIG_FILE):
            file = path / name
            if not file.is_file():
                return f"{name} is missing"
            if file.stat().st_size != sizes.get(name):
                return f"{name} has {file.stat().st_size} bytes, expected {sizes.get(name)}"
        read_json(path / STATE_FILE)
        read_json(path / CONFIG_FILE)
        with safe_open(path / MODEL_FILE, framework="pt") as handle:
            handle.keys()
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"unreadable: {error}"
    return None


def latest_checkpoint(checkpoint_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint, warning about and skipping broken ones."""
    for step, path in reversed(step_dirs(checkpoint_dir)):
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        log.warning("skipping checkpoint %s (step %d): %s", path, step, problem)
    return None


def remove_checkpoints(checkpoint_dir: str | os.PathLike) -> None:
    """Delete every step checkpoint and leftover temporary folder in `checkpoint_dir`."""
    for _, path in step_dirs(checkpoint_dir):
        shutil.rmtree(path)
    _remove_leftovers(checkpoint_dir)


def _remove_leftovers(checkpoint_dir: str | os.PathLike) -> None:
    """Delete temporary folders left by a save that was killed before its rename."""
    for path in Path(checkpoint_dir).glob(".step_*.tmp"):
        shutil.rmtree(path, ignore_errors=True)


def prune_checkpoints(checkpoint_dir: str | os.PathLike, keep: int) -> None:
    """Keep the newest `keep` complete checkpoints; delete older ones and broken ones."""
    complete = []
    for _, path in step_dirs(checkpoint_dir):
        if checkpoint_problem(path) is None:
            complete.append(path)
        else:
            shutil.rmtree(path)
    for path in complete[: max(0, len(complete) - keep)]:
        shutil.rmtree(path)
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
    """Write `step_<step>/` atomically, then prune to `save_total_limit` checkpoints."""
    target = Path(checkpoint_dir) / f"step_{step}"
    rng_json, rng_tensors = capture_rng_state()
    with atomic_path(target) as tmp:
        tmp.mkdir()
        save_file(model_tensors(model), tmp / MODEL_FILE)
        torch.save(optimizer.state_dict(), tmp / OPTIMIZER_FILE)
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


def checkpoint_fingerprint(path: Path) -> str | None:
    return read_json(path / CONFIG_FILE).get("fingerprint")


def check_model_config(saved: dict, current: ModelConfig, where: Path) -> None:
    """Raise ConfigMismatchError naming each model key whose value differs."""
    current_fields = dataclasses.asdict(current)
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
    """Load weights, optimizer and RNG state from `path`; return its state.json contents."""
    path = Path(path)
    check_model_config(read_json(path / CONFIG_FILE)["model"], model.config, path)
    load_model_tensors(model, path / MODEL_FILE)
    if optimizer is not None:
        optimizer.load_state_dict(
            torch.load(path / OPTIMIZER_FILE, map_location="cpu", weights_only=True)
        )
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
    """Write `model.safetensors`, `config.json`, `tokenizer.model`, `metrics.json` atomically."""
    folder = Path(folder)
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        save_file(model_tensors(model), tmp / MODEL_FILE, metadata={"format": "pt"})
        write_json(
            tmp / CONFIG_FILE, {"architecture": ARCHITECTURE, **dataclasses.asdict(model_config)}
        )
        shutil.copyfile(tokenizer_path, tmp / "tokenizer.model")
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
    fields = read_json(folder / CONFIG_FILE)
    architecture = fields.pop("architecture", None)
    if architecture != ARCHITECTURE:
        raise ValueError(f"{folder / CONFIG_FILE}: architecture {architecture!r}, expected 'helox'")
    config = section_from_dict(ModelConfig, fields, str(folder / CONFIG_FILE))
    model = create_model_from_config(config).to(device)
    load_model_tensors(model, folder / MODEL_FILE)
    return model.eval(), config
