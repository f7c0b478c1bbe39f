"""Seconds per optimizer step of Helox's Muon against torch.optim.Muon on the same matrices.

    python benchmarks/muon_step.py [--shape 124m|1.3b|tiny] [--steps 10] [--device auto|cpu|cuda]

Both update the hidden matrices (attention and MLP projections) of the Helox model at the
shape of `gpu_throughput.py` from fixed random gradients: torch's Muon orthogonalises one
matrix at a time (Newton-Schulz in bf16), Helox's stacks the matrices of one shape into one
batched iteration (bf16 on CUDA, fp32 on CPU, where bf16 matmuls are slow). Fused AdamW on
the same matrices is timed as the floor a Muon step stands on. The Newton-Schulz rate is its
multiply-adds (5 iterations of 2·m²·n + 2·m³ + 2·m²·n for an m × n matrix, m ≤ n) per second
of Helox's whole step. The last line is torch's seconds per step over Helox's.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Callable

import torch
from gpu_throughput import SHAPES, TINY_SHAPES, helox_model_config
from torch import Tensor

from helox.model.network import create_model_from_config
from helox.train.optim import Muon, is_hidden_matrix

NEWTON_SCHULZ_STEPS = 5


def newton_schulz_flops(params: list[Tensor]) -> int:
    total = 0
    for param in params:
        short, long = sorted(param.shape)
        total += NEWTON_SCHULZ_STEPS * (4 * short * short * long + 2 * short**3)
    return total


def seconds_per_step(step: Callable[[], object], device: torch.device, warmup: int, steps: int):
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - started) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    shapes = {**SHAPES, **TINY_SHAPES}
    parser.add_argument("--shape", default=None, choices=sorted(shapes))
    parser.add_argument("--steps", type=int, default=10, help="timed steps per optimizer")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args()
    device_name = args.device
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device_name)
    shape_name = args.shape or ("124m" if device.type == "cuda" else "tiny")
    torch.manual_seed(0)
    model = create_model_from_config(helox_model_config(shapes[shape_name])).to(device)
    params = [p for name, p in model.named_parameters() if is_hidden_matrix(name, p)]
    for param in params:
        param.grad = torch.randn_like(param)
    shape_counts = Counter(tuple(param.shape) for param in params)
    print(
        f"device {device}, shape {shape_name}: {len(params)} hidden matrices, "
        f"{sum(p.numel() for p in params):,} weights; by shape {dict(shape_counts)}"
    )

    optimizers = {
        "fused AdamW": torch.optim.AdamW(
            params, lr=1e-4, weight_decay=0.1, fused=device.type == "cuda"
        ),
        "torch Muon": torch.optim.Muon(
            params, lr=1e-4, weight_decay=0.1, adjust_lr_fn="match_rms_adamw"
        ),
        "helox Muon": Muon(params, lr=1e-4, weight_decay=0.1),
    }
    seconds = {}
    for name, optimizer in optimizers.items():
        seconds[name] = seconds_per_step(optimizer.step, device, args.warmup, args.steps)
        print(f"  {name:<12} {seconds[name] * 1e3:9.2f} ms a step")
    flops = newton_schulz_flops(params)
    print(
        f"Newton-Schulz {flops / 1e9:,.1f} GFLOP a step: "
        f"{flops / seconds['helox Muon'] / 1e9:,.1f} GFLOP/s in Helox's whole step"
    )
    print(f"helox Muon / fused AdamW seconds: {seconds['helox Muon'] / seconds['fused AdamW']:.2f}")
    print(f"torch Muon / helox Muon seconds: {seconds['torch Muon'] / seconds['helox Muon']:.2f}")


if __name__ == "__main__":
    main()
