"""Peak memory of a DDP training step: Helox's wrapping against DDP's defaults.

    python benchmarks/ddp_memory.py [--steps 3] [--layers 12] [--width 768]

Each side runs in two fresh gloo processes under torchrun on the CPU: a HeloxLM of
`--layers` × `--width` (vocabulary 8000) wrapped by `DeviceManager.wrap_model` (Helox), by
a plain `DistributedDataParallel(model)` (the reference), or not at all (each process alone,
the floor), a few fused-AdamW steps on small random batches so that weights, gradients and
optimizer state dominate, and rank 0 reporting its peak resident set size. Printed last: the
ratio of the peaks, and the share of DDP's own memory (peak above the floor) Helox keeps.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from helox.model.config import ModelConfig
from helox.model.device import DeviceManager
from helox.model.network import create_model_from_config


def worker(side: str, steps: int, layers: int, width: int) -> None:
    """Train `steps` steps as one of two processes; rank 0 prints its memory as JSON."""
    torch.manual_seed(0)
    device_manager = DeviceManager("cpu", threads=1)
    device_manager.init_distributed()
    config = ModelConfig(
        vocab_size=8000,
        hidden_size=width,
        num_layers=layers,
        num_attention_heads=width // 64,
        max_position_embeddings=64,
    )
    model = create_model_from_config(config)
    if side == "helox":
        wrapped = device_manager.wrap_model(model)
    elif side == "alone":
        wrapped = model
    else:
        wrapped = DistributedDataParallel(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    generator = torch.Generator().manual_seed(dist.get_rank())
    for _ in range(steps):
        tokens = torch.randint(0, config.vocab_size, (2, 65), generator=generator)
        loss = wrapped(tokens[:, :-1], labels=tokens[:, 1:]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if dist.get_rank() == 0:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"side": side, "peak_mib": peak, "parameters": model.num_parameters()}))
    device_manager.shutdown()


def run_side(side: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node"]
    command += ["2", __file__, "--worker", side, "--steps", str(args.steps)]
    command += ["--layers", str(args.layers), "--width", str(args.width)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(next(line for line in result.stdout.splitlines() if line.startswith("{")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--worker", choices=["helox", "reference", "alone"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.steps, args.layers, args.width)
        return
    runs = {side: run_side(side, args) for side in ("reference", "helox", "alone")}
    peaks = {side: run["peak_mib"] for side, run in runs.items()}
    parameters = runs["alone"]["parameters"]
    print(f"parameters: {parameters:,} (fp32 gradients {4 * parameters / 2**20:.0f} MiB)")
    for side, peak in peaks.items():
        print(f"{side:9} peak: {peak:.0f} MiB")
    above = {side: peaks[side] - peaks["alone"] for side in ("reference", "helox")}
    print(
        f"helox/reference DDP memory above one process: {above['helox'] / above['reference']:.3f}"
    )
    print(f"helox/reference peak memory: {peaks['helox'] / peaks['reference']:.3f}")


if __name__ == "__main__":
    main()
