"""A model's weights as whole tensors on CPU, gathered from (or scattered to) FSDP shards
where the model is sharded; what a model folder's `model.safetensors` holds, and (its trained
weights only) what a step checkpoint's does."""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file
from torch import Tensor
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    set_model_state_dict,
)

from helox.model.network import HeloxLM

GATHER = StateDictOptions(full_state_dict=True, cpu_offload=True)
# The same without frozen weights (a LoRA stage's base), which no training step changes.
GATHER_TRAINED = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=True)

SCATTER = StateDictOptions(full_state_dict=True, strict=False)


def model_tensors(model: HeloxLM, trained_only: bool = False) -> dict[str, Tensor]:
    """Whole tensors on CPU (with `trained_only`, of the weights that train), without a tied
    `lm_head.weight`; every process must call it, and under FSDP only rank 0 gets them (the
    others get an empty dict)."""
    options = GATHER_TRAINED if trained_only else GATHER
    tensors = {
        name: tensor.contiguous()
        for name, tensor in get_model_state_dict(model, options=options).items()
    }
    if model.config.tie_word_embeddings:
        tensors.pop("lm_head.weight", None)
    return tensors


def load_model_tensors(model: HeloxLM, path: Path, trained_only: bool = False) -> None:
    """Load whole tensors from `path` into `model`, sharding them under FSDP; with
    `trained_only`, those of the weights that train, the frozen ones keeping their values."""
    tensors = load_file(path)
    tied = {"lm_head.weight"} if model.config.tie_word_embeddings else set()
    frozen = {name for name, p in model.named_parameters() if trained_only and not p.requires_grad}
    expected = set(model.state_dict()) - frozen
    missing, unexpected = expected - set(tensors) - tied, set(tensors) - expected
    if missing or unexpected:
        raise ValueError(
            f"{path}: tensors do not fit the model (missing {sorted(missing)}, "
            f"unexpected {sorted(unexpected)})"
        )
    set_model_state_dict(model, tensors, options=SCATTER)
