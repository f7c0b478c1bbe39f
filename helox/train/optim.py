"""The optimizers: AdamW, or Muon for the hidden weight matrices with AdamW for the rest.

`build_optimizer` picks one from the training config (`optimizer: adamw | muon`).

Muon (Jordan et al. 2024) orthogonalises each matrix's Nesterov momentum by a quintic
Newton-Schulz iteration. Updates are scaled by 0.2·sqrt(max(rows, cols)) to match AdamW's
RMS (Liu et al. 2025, Moonlight; torch's `adjust_lr_fn="match_rms_adamw"`), so one
learning rate and schedule serve both. Embeddings, the output head, positions and norm
gains stay with AdamW, as Muon's authors advise, and so do LoRA adapters (helox.model.lora):
their factors are thin rank-r matrices, not the square-ish hidden matrices Muon's
orthogonalised step is made for, and PEFT and litgpt train them with AdamW; a LoRA stage with
`optimizer: muon` trains with AdamW alone. `torch.optim.Muon` iterates in bf16,
which on CPU took 0.55 s a step for the 2 × 128 model against 0.05 s in fp32
(benchmarks/RESULTS.md); this one uses bf16 on CUDA only. It iterates on every matrix of one
shape at once (one batched product per iteration), which took it from 0.54 to 0.78 of AdamW's
tokens per second for a 124M model on an H100, and to 0.96 at 262 k tokens a step. Under
DDP each process orthogonalises its share of the matrices; under FSDP2 momentum stays in row
shards and only the orthogonalisation sees whole matrices (`orthogonalise_sharded`).

`step_unless` skips a step whose loss or gradient is not finite without the host waiting for
the device: fused AdamW and Muon read a `found_inf` flag on the device, as GradScaler sets it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.tensor import DTensor, Shard

from helox.model.lora import ADAPTER_FACTORS
from helox.train.config import TrainingConfig

HIDDEN_MATRIX_PARENTS = (".self_attn.", ".mlp.")
NEWTON_SCHULZ = (3.4445, -4.7750, 2.0315)  # torch's and Keller Jordan's coefficients


def orthogonalise(matrices: Tensor, steps: int = 5) -> Tensor:
    """Approximately U·Vᵀ of each matrix (..., rows, cols) = U·S·Vᵀ by `steps` quintic
    Newton-Schulz iterations, a stack of same-shaped matrices in one batched product each.

    Each iteration is three batched products whose scaling and sums ride in the matmul
    (`baddbmm`'s alpha and beta) rather than in separate passes over the matrices."""
    a, b, c = NEWTON_SCHULZ
    x = matrices.to(torch.bfloat16 if matrices.is_cuda else torch.float32)
    tall = x.size(-2) > x.size(-1)
    x = x.mT if tall else x
    x = x.reshape(-1, *x.shape[-2:])
    x = x / x.norm(dim=(-2, -1), keepdim=True).clamp(min=1e-7)
    for _ in range(steps):
        gram = torch.bmm(x, x.mT)
        polynomial = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)
        x = torch.baddbmm(x, polynomial, x, beta=a)
    x = x.reshape(*matrices.shape[:-2], *x.shape[-2:])
    return (x.mT if tall else x).to(matrices.dtype)


def orthogonalise_shared(matrices: Tensor) -> Tensor:
    """`orthogonalise` of a (count, rows, cols) stack; under several processes each takes an
    equal share of the matrices and they gather the results (every process holds the same
    reduced gradients, so the work need not be done on each)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return orthogonalise(matrices)
    world, rank = dist.get_world_size(), dist.get_rank()
    count = matrices.size(0)
    share = math.ceil(count / world)
    padding = matrices.new_zeros(share * world - count, *matrices.shape[1:])
    padded = torch.cat([matrices, padding])
    mine = orthogonalise(padded[rank * share : (rank + 1) * share]).contiguous()
    gathered = torch.empty_like(padded)
    dist.all_gather(list(gathered.split(share)), mine)
    return gathered[:count]


def orthogonalise_sharded(rows: Tensor, like: DTensor) -> Tensor:
    """`orthogonalise` of a stack of FSDP shards: `rows` is this process's (count, its rows,
    cols) part of matrices sharded as `like` is. One all-to-all hands each process whole
    matrices, its share of the count; another returns the results as row shards."""
    (placement,) = like.placements
    if not (isinstance(placement, Shard) and placement.dim == 0):
        raise ValueError(f"Muon under FSDP expects row-sharded matrices, got {like.placements}")
    shape = (rows.size(0), *like.shape)
    by_rows = DTensor.from_local(
        rows, like.device_mesh, [Shard(1)], shape=torch.Size(shape), stride=_contiguous(shape)
    )
    by_matrix = by_rows.redistribute(placements=[Shard(0)])
    done = DTensor.from_local(
        orthogonalise(by_matrix.to_local()),
        like.device_mesh,
        [Shard(0)],
        shape=torch.Size(shape),
        stride=_contiguous(shape),
    )
    return done.redistribute(placements=[Shard(1)]).to_local()


def _contiguous(shape: Sequence[int]) -> tuple[int, ...]:
    """The strides of a contiguous tensor of `shape`."""
    strides = [1]
    for size in reversed(shape[1:]):
        strides.insert(0, strides[0] * size)
    return tuple(strides)


def local(tensor: Tensor) -> Tensor:
    """This process's part of `tensor`: its shard if it is a DTensor, else itself."""
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def same_shape_runs(params: Iterable[Tensor]) -> list[list[Tensor]]:
    """`params` grouped by shape, in order of first appearance."""
    runs: dict[torch.Size, list[Tensor]] = {}
    for param in params:
        runs.setdefault(param.shape, []).append(param)
    return list(runs.values())


class Muon(torch.optim.Optimizer):
    """Muon for 2-D parameters, with decoupled weight decay and AdamW-matched update RMS.

    Matrices of one shape are updated together: one stacked Newton-Schulz iteration for all
    the query projections of the model, say, instead of one per layer. Like torch's fused
    AdamW it reads a `found_inf` tensor set on it (as GradScaler does) and then leaves
    parameters and momentum untouched on the device when it is nonzero, so a step with a
    non-finite gradient is skipped without the host waiting for the device.
    """

    def __init__(
        self, params: Iterable[Tensor], lr: float, weight_decay: float, momentum: float = 0.95
    ):
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay, "momentum": momentum})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = closure() if closure is not None else None
        found_inf = getattr(self, "found_inf", None)
        for group in self.param_groups:
            with_grads = [p for p in group["params"] if p.grad is not None]
            for params in same_shape_runs(with_grads):
                self._update(params, group, found_inf)
        return loss

    def _update(self, params: list[Tensor], group: dict, found_inf: Tensor | None) -> None:
        """One Muon step of same-shaped `params` (whole, or this process's FSDP shards)."""
        momentum, lr = group["momentum"], group["lr"]
        grads = torch.stack([local(p.grad) for p in params])
        keep: Tensor | float = 1.0
        if found_inf is not None:
            keep = 1.0 - found_inf.to(grads.dtype)
            grads = torch.where(found_inf.bool(), 0.0, grads)
        buffers = [local(self._momentum_buffer(p)) for p in params]
        stacked_buffers = torch.stack(buffers)
        stacked_buffers.lerp_(grads, (1 - momentum) * keep)
        torch._foreach_copy_(buffers, list(stacked_buffers.unbind(0)))
        nesterov = grads.lerp(stacked_buffers, momentum)
        if isinstance(params[0], DTensor):
            updates = orthogonalise_sharded(nesterov, params[0])
        else:
            updates = orthogonalise_shared(nesterov)
        updates.mul_(-lr * 0.2 * math.sqrt(max(params[0].shape)) * keep)
        shards = [local(p) for p in params]
        torch._foreach_mul_(shards, 1 - lr * group["weight_decay"] * keep)
        torch._foreach_add_(shards, list(updates.unbind(0)))

    def _momentum_buffer(self, param: Tensor) -> Tensor:
        state = self.state[param]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(param)
        return state["momentum_buffer"]


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


def reads_found_inf(optimizer: torch.optim.Optimizer) -> bool:
    """Whether `optimizer.step()` skips its update itself when `optimizer.found_inf` is set."""
    return isinstance(optimizer, Muon) or getattr(optimizer, "_step_supports_amp_scaling", False)


def step_unless(optimizer: torch.optim.Optimizer, found_inf: Tensor) -> None:
    """Step `optimizer` unless `found_inf` (a 0-dim tensor) is nonzero. Fused AdamW and Muon
    decide on the device, so the host runs on; another optimizer makes the host read it."""
    inner = optimizer.optimizers if isinstance(optimizer, CombinedOptimizer) else [optimizer]
    if not all(
        isinstance(o, Muon) or getattr(o, "_step_supports_amp_scaling", False) for o in inner
    ):
        if not found_inf.item():
            optimizer.step()
        return
    for member in inner:
        member.found_inf = found_inf
    try:
        optimizer.step()
    finally:
        for member in inner:
            del member.found_inf


def is_hidden_matrix(name: str, param: nn.Parameter) -> bool:
    """A 2-D weight of an attention or MLP projection (not a LoRA adapter's factor), the
    matrices Muon is meant for."""
    return (
        param.dim() == 2
        and any(part in name for part in HIDDEN_MATRIX_PARENTS)
        and not name.endswith(ADAPTER_FACTORS)
    )


def adamw_param_groups(params: Iterable[Tensor], weight_decay: float) -> list[dict[str, Any]]:
    """AdamW's groups: weight decay on matrices, none on vectors (norm gains, biases)."""
    params = list(params)
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


def build_optimizer(
    model: nn.Module, config: TrainingConfig, device: torch.device
) -> torch.optim.Optimizer:
    """AdamW over the parameters that train, weight decay on matrices only, the fused kernel
    on CUDA and CPU; with `optimizer: muon`, Muon takes the hidden matrices among them and
    AdamW the rest (AdamW alone where no hidden matrix trains, as in a LoRA stage)."""
    kernel = {"fused": True} if device.type in ("cuda", "cpu") else {"foreach": True}
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    to_muon = {n for n, p in named if config.optimizer == "muon" and is_hidden_matrix(n, p)}
    hidden = [p for n, p in named if n in to_muon]
    rest = [p for n, p in named if n not in to_muon]
    adamw = torch.optim.AdamW(
        adamw_param_groups(rest, config.weight_decay),
        lr=config.learning_rate,
        betas=(config.beta1, config.beta2),
        **kernel,
    )
    if not hidden:
        return adamw
    return CombinedOptimizer([Muon(hidden, config.learning_rate, config.weight_decay), adamw])
