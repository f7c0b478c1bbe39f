"""Low-rank adapters (LoRA, Hu et al. 2021) on a model's linear projections.

`apply_lora` freezes every weight of a model and wraps each `nn.Linear` whose name is one of
`LoRAConfig.targets` (Llama's `q_proj` ... `down_proj`, which every family Helox builds keeps)
in a `LoRALinear`: y = W x + b + (alpha / rank) · B A dropout(x), with A (rank × in) drawn as
`nn.Linear` draws its weights and B (out × rank) zero, so training starts at the base model
(as PEFT and litgpt do). The wrapped layer keeps its `weight` and `bias` under their own names,
and the adapter's factors are `<projection>.lora_A.weight` and `<projection>.lora_B.weight`,
PEFT's names. `adapters_disabled` switches every adapter off, giving back the base model (DPO's
reference) without a second copy of its weights; `merge_adapters` folds trained adapters into
the base weights of a gathered state dict.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch.nn.functional as F
from torch import Tensor, nn

from helox.common.config_files import ConfigError
from helox.model.lora_config import LoRAConfig

ADAPTER_FACTORS = (".lora_A.weight", ".lora_B.weight")


class LoRALinear(nn.Module):
    """A frozen linear layer plus a trainable low-rank update of its weight."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float):
        super().__init__()
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight
        self.register_parameter("bias", base.bias)
        like = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Linear(self.in_features, rank, bias=False, **like)
        self.lora_B = nn.Linear(rank, self.out_features, bias=False, **like)
        nn.init.zeros_(self.lora_B.weight)
        self.lora_dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.alpha = alpha
        self.adapter_enabled = True

    @property
    def rank(self) -> int:
        return self.lora_A.out_features

    def forward(self, x: Tensor) -> Tensor:
        out = F.linear(x, self.weight, self.bias)
        if not self.adapter_enabled:
            return out
        update = self.lora_B(self.lora_A(self.lora_dropout(x)))
        return out + update * (self.alpha / self.rank)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}"


def apply_lora(model: nn.Module, config: LoRAConfig, where: str) -> None:
    """Freeze every parameter of `model` and put an adapter on each projection named in
    `config.targets`. A target that names no linear layer of the model, or a rank above a
    projection's smaller side, is refused naming `where.targets` or `where.rank`."""
    linears = {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    chosen = {name: m for name, m in linears.items() if name.rpartition(".")[2] in config.targets}
    present = {name.rpartition(".")[2] for name in linears}
    missing = [target for target in config.targets if target not in present]
    if missing:
        raise ConfigError(
            f"config key {where}.targets: {', '.join(missing)} names no linear layer of the "
            f"model; its layers are {', '.join(sorted(present))}"
        )
    for name, linear in chosen.items():
        side = min(linear.in_features, linear.out_features)
        if config.rank > side:
            raise ConfigError(
                f"config key {where}.rank: {config.rank} is more than the smaller side of "
                f"{name} ({linear.out_features} × {linear.in_features}); a rank of at most "
                f"{side} fits it (LoRA's point is a rank far below it)"
            )
    model.requires_grad_(False)
    for name, linear in chosen.items():
        parent_name, _, leaf = name.rpartition(".")
        adapted = LoRALinear(linear, config.rank, config.alpha, config.dropout)
        setattr(model.get_submodule(parent_name), leaf, adapted)


def adapted_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """Every adapted projection of `model`, by name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def lora_of(model: nn.Module) -> LoRAConfig | None:
    """The adapters `model` carries, as a LoRAConfig (targets sorted); None without any."""
    layers = list(adapted_layers(model).items())
    if not layers:
        return None
    _, first = layers[0]
    dropout = first.lora_dropout.p if isinstance(first.lora_dropout, nn.Dropout) else 0.0
    targets = sorted({name.rpartition(".")[2] for name, _ in layers})
    return LoRAConfig(first.rank, first.alpha, dropout, targets)


@contextmanager
def adapters_disabled(model: nn.Module) -> Iterator[None]:
    """Run `model` as its base: every adapter contributes nothing inside the block."""
    layers = adapted_layers(model).values()
    for layer in layers:
        layer.adapter_enabled = False
    try:
        yield
    finally:
        for layer in layers:
            layer.adapter_enabled = True


def merge_adapters(
    tensors: dict[str, Tensor], scale: float
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """(the base weights of a state dict with each adapter's scale · B · A added to its
    projection's weight, computed in fp32; the adapter factors alone)."""
    adapters = {key: value for key, value in tensors.items() if key.endswith(ADAPTER_FACTORS)}
    merged = {key: value for key, value in tensors.items() if key not in adapters}
    for key, down in adapters.items():
        if not key.endswith(".lora_A.weight"):
            continue
        projection = key.removesuffix(".lora_A.weight")
        up = adapters[f"{projection}.lora_B.weight"]
        weight = merged[f"{projection}.weight"]
        update = scale * (up.float() @ down.float())
        merged[f"{projection}.weight"] = (weight.float() + update).to(weight.dtype)
    return merged, adapters
