"""The training state as tensors: the model and optimizer, gathered whole or as each
process's own shards (torch.distributed.checkpoint, written as safetensors), and the random
generators' states. helox.train.checkpoint puts them in step folders; nothing is pickled."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from safetensors.torch import load_file
from torch import Tensor
from torch.distributed.checkpoint import HuggingFaceStorageReader, HuggingFaceStorageWriter
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from helox.common.distributed import DistributedEnv
from helox.model.network import HeloxLM
from helox.model.tensors import GATHER, SCATTER

SHARDS_DIR = "shards"  # a sharded checkpoint's torch.distributed.checkpoint files


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
    groups = named_param_groups(model, optimizer)
    set_optimizer_state_dict(
        model, optimizer, {"state": state, "param_groups": groups}, options=SCATTER
    )


def sharded_state(
    model: HeloxLM, optimizer: torch.optim.Optimizer | None = None
) -> dict[str, Tensor]:
    """This process's part of the model's trained weights (and the optimizer state), not
    gathered: DTensor shards under FSDP, whole tensors otherwise; keyed `model.<name>` and
    `optimizer.<name>.<key>` without a tied `lm_head.weight`. Every process must call it."""
    weights = get_model_state_dict(model, options=StateDictOptions(ignore_frozen_params=True))
    if model.config.tie_word_embeddings:
        weights.pop("lm_head.weight", None)
    state = {f"model.{name}": tensor for name, tensor in weights.items()}
    if optimizer is not None:
        moments = get_optimizer_state_dict(model, optimizer).get("state", {})
        for name, values in moments.items():
            state.update({f"optimizer.{name}.{key}": value for key, value in values.items()})
    return state


def write_shards(folder: Path, model: HeloxLM, optimizer: torch.optim.Optimizer) -> None:
    """Every process writes its own shards into `folder/shards/` (a fresh folder of that
    name, the same path on every process); every process must call it."""
    if DistributedEnv.from_environ().is_main:
        shutil.rmtree(folder, ignore_errors=True)
        (folder / SHARDS_DIR).mkdir(parents=True)
    if dist.is_initialized():
        dist.barrier()
    writer = HuggingFaceStorageWriter(str(folder / SHARDS_DIR), save_distributed=True)
    dcp.save(sharded_state(model, optimizer), storage_writer=writer)


def load_shards(
    folder: Path, model: HeloxLM, optimizer: torch.optim.Optimizer | None = None
) -> None:
    """Read `folder/shards/` into `model` (and `optimizer`), each process only its own part,
    whatever the parallelism and number of processes that wrote them."""
    state = sharded_state(model, optimizer)
    dcp.load(state, storage_reader=HuggingFaceStorageReader(str(folder / SHARDS_DIR)))
    weights = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    set_model_state_dict(model, weights, options=StateDictOptions(strict=False))
    if optimizer is None:
        return
    moments: dict[str, dict[str, Tensor]] = {}
    for flat_name, value in state.items():
        if flat_name.startswith("optimizer."):
            name, key = flat_name.removeprefix("optimizer.").rsplit(".", 1)
            moments.setdefault(name, {})[key] = value
    set_optimizer_state_dict(
        model, optimizer, {"state": moments, "param_groups": named_param_groups(model, optimizer)}
    )


def named_param_groups(model: HeloxLM, optimizer: torch.optim.Optimizer) -> list[dict]:
    """The optimizer's parameter groups as configured, naming their parameters."""
    names = {id(param): name for name, param in model.named_parameters()}
    return [
        {
            **{k: v for k, v in group.items() if k != "params"},
            "params": [names[id(p)] for p in group["params"]],
        }
        for group in optimizer.param_groups
    ]


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
