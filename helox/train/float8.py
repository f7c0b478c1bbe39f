"""Float8 training of the hidden projections through torchao (`float8: true`).

Each attention and MLP projection's matmuls run in float8 (e4m3 forward, e5m2 gradients)
with one scale per tensor, computed on the fly; weights, optimizer state and checkpoints
stay as they were, so a run can switch float8 off and load the same files. The output head
and embeddings keep their precision, as torchtitan and torchao advise. Tensor-core float8
needs a GPU of compute capability 8.9 or more (Ada, Hopper); elsewhere torchao emulates it,
which is correct but slower, so Helox warns.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from helox.train.optim import is_hidden_matrix

log = logging.getLogger(__name__)
FLOAT8_CAPABILITY = (8, 9)


def float8_projections(model: nn.Module, device: torch.device) -> int:
    """Swap the hidden projections of `model` for torchao's Float8Linear in place; returns
    how many. Call before compiling or wrapping the model."""
    try:
        from torchao.float8 import convert_to_float8_training
    except ImportError:
        raise ValueError(
            "float8: true needs torchao: pip install 'helox[fp8]' (or torchao) first"
        ) from None
    if device.type != "cuda" or torch.cuda.get_device_capability(device) < FLOAT8_CAPABILITY:
        log.warning("float8 on %s is emulated, not run on tensor cores: slower, not faster", device)
    names = {
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear)
        and is_hidden_matrix(f"{name}.weight", module.weight)
        and module.in_features % 16 == 0
        and module.out_features % 16 == 0
    }
    convert_to_float8_training(model, module_filter_fn=lambda _, name: name in names)
    return len(names)
