"""The optimizers: AdamW, or Muon for the hidden weight matrices with AdamW for the rest.

`build_optimizer` picks one from the training config (`optimizer: adamw | muon`).

Muon (Jordan et al. 2024) orthogonalises each matrix's Nesterov momentum by a quintic
Newton-Schulz iteration. Updates are scaled by 0.2·sqrt(max(rows, cols)) to match AdamW's
RMS (Liu et al. 2025, Moonlight; torch's `adjust_lr_fn="match_rms_adamw"`), so one
learning rate and schedule serve both. Embeddings, the output head, positions and norm
gains stay with AdamW, as Muon's authors advise. `torch.optim.Muon` iterates in bf16,
which on CPU took 0.55 s a step for the 2 × 128 model against 0.05 s in fp32
(benchmarks/RESULTS.md); this one uses bf16 on CUDA only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from helox.config import TrainingConfig

HIDDEN_MATRIX_PARENTS = (".self_attn.", ".mlp.")
NEWTON_SCHULZ = (3.4445, -4.7750, 2.0315)  # torch's and Keller Jordan's coefficients


def orthogonalise(matrix: Tensor, steps: int = 5) -> Tensor:
    """Approximately U·Vᵀ of `matrix` = U·S·Vᵀ by `steps` quintic Newton-Schulz iterations."""
    a, b, c = NEWTON_SCHULZ
    x = matrix.to(torch.bfloat16 if matrix.is_cuda else torch.float32)
    wide = x.size(0) <= x.size(1)
    x = x if wide else x.T
    x = x / x.norm().clamp(min=1e-7)
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return (x if wide else x.T).to(matrix.dtype)


class Muon(torch.optim.Optimizer):
    """Muon for 2-D parameters, with decoupled weight decay and AdamW-matched update RMS."""

    def __init__(
        self, params: Iterable[Tensor], lr: float, weight_decay: float, momentum: float = 0.95
    ):
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay, "momentum": momentum})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(param)
                buffer = state["momentum_buffer"]
                buffer.lerp_(param.grad, 1 - group["momentum"])
                update = orthogonalise(param.grad.lerp(buffer, group["momentum"]))
                param.mul_(1 - group["lr"] * group["weight_decay"])
                param.add_(update, alpha=-group["lr"] * 0.2 * math.sqrt(max(param.shape)))
        return loss


class CombinedOptimizer(torch.optim.Optimizer):
    """Several optimizers over disjoint parameters behind one `Optimizer`: one list of
    param groups (a schedule sets every group's lr), one state dict, one `step()`."""

    def __init__(self, optimizers: Sequence[torch.optim.Optimizer]):
        self.optimizers = list(optimizers)
        super().__init__([group for o in self.optimizers for group in o.param_groups], {})
        self._share_state()

    def _share_state(self) -> None:
        """Point each inner optimizer at this one's groups and state (keys never overlap)."""
        start = 0
        for optimizer in self.optimizers:
            count = len(optimizer.param_groups)
            optimizer.param_groups = self.param_groups[start : start + count]
            optimizer.state = self.state
            start += count

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = closure() if closure is not None else None
        for optimizer in self.optimizers:
            optimizer.step()
        return loss

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._share_state()


def is_hidden_matrix(name: str, param: nn.Parameter) -> bool:
    """A 2-D weight of an attention or MLP projection, the matrices Muon is meant for."""
    return param.dim() == 2 and any(part in name for part in HIDDEN_MATRIX_PARENTS)


def adamw_param_groups(params: Iterable[Tensor], weight_decay: float) -> list[dict[str, Any]]:
    """AdamW's groups: weight decay on matrices, none on vectors (norm gains, biases)."""
    params = list(params)
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


def muon_with_adamw(
    model: nn.Module,
    learning_rate: float,
    weight_decay: float,
    betas: tuple[float, float],
    adamw_kernel: dict[str, bool],
) -> CombinedOptimizer:
    """Muon over the hidden matrices; AdamW over the rest (weight decay on matrices only)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    hidden = [p for n, p in named if is_hidden_matrix(n, p)]
    rest = [p for n, p in named if not is_hidden_matrix(n, p)]
    adamw = torch.optim.AdamW(
        adamw_param_groups(rest, weight_decay), lr=learning_rate, betas=betas, **adamw_kernel
    )
    return CombinedOptimizer([Muon(hidden, learning_rate, weight_decay), adamw])


def build_optimizer(
    model: nn.Module, config: TrainingConfig, device: torch.device
) -> torch.optim.Optimizer:
    """AdamW with weight decay on matrices only, the fused kernel on CUDA and CPU; with
    `optimizer: muon`, Muon takes the attention and MLP matrices."""
    kernel = {"fused": True} if device.type in ("cuda", "cpu") else {"foreach": True}
    betas = (config.beta1, config.beta2)
    if config.optimizer == "muon":
        return muon_with_adamw(model, config.learning_rate, config.weight_decay, betas, kernel)
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(
        adamw_param_groups(params, config.weight_decay),
        lr=config.learning_rate,
        betas=betas,
        **kernel,
    )
