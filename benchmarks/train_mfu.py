"""Model FLOPs utilisation of Helox's training step on this machine.

    python benchmarks/train_mfu.py [--steps 10] [--compile] [--threads N] [--clock wall|cpu]

Trains the Llama-style model at 6 layers, 384 wide, 6 heads, sequence 256, batch 8,
vocabulary 8000 through `Trainer.train_step` (forward, backward, clipping, fused AdamW)
on random tokens. Achieved FLOP/s is `HeloxLM.flops_per_token` (6·N for the weights
plus 12·L·d·T for attention) times tokens per second. On CPU the peak is the fp32
matmul throughput of this machine measured in the same run: a probe runs before and
after every step, so both see the same load from other processes, and each step's MFU
is also shown against the faster probe beside it. The figure on the last line is the best
step against the best probe: load from other processes only ever slows either down, so
the fastest of each is the closest to what the machine does undisturbed. On CUDA the
peak is the GPU's dense bf16 peak (`helox.train.metrics.BF16_PEAK_FLOPS`) and training
runs under bf16 autocast.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable

import torch
from torch import Tensor

from helox.model.config import ModelConfig
from helox.model.device import DeviceManager
from helox.model.network import create_model_from_config
from helox.train.config import TrainingConfig
from helox.train.loop import Trainer
from helox.train.metrics import measure_matmul_peak, peak_flops

MODEL = ModelConfig(
    vocab_size=8000,
    hidden_size=384,
    num_layers=6,
    num_attention_heads=6,
    max_position_embeddings=256,
)
SEQ_LEN, BATCH_SIZE = 256, 8
WARMUP_STEPS = 2
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


class RandomTokens:
    """Endless batches of uniformly random token ids; nothing to resume."""

    def __init__(self, batch_size: int, seq_len: int, vocab_size: int):
        self.shape, self.vocab_size = (batch_size, seq_len + 1), vocab_size
        self.generator = torch.Generator().manual_seed(0)

    def __next__(self) -> tuple[Tensor, Tensor]:
        window = torch.randint(0, self.vocab_size, self.shape, generator=self.generator)
        return window[:, :-1], window[:, 1:]

    def state(self) -> dict:
        return {}

    def load_state(self, state: dict) -> None:
        pass


def probe(device: torch.device, clock: Callable[[], float]) -> float | None:
    """This machine's fp32 matmul FLOP/s on CPU, timed by `clock`; the data-sheet peak on GPU."""
    if device.type == "cpu":
        return measure_matmul_peak(clock=clock)
    return peak_flops(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="timed steps after 2 warm-up steps")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--threads", type=int, default=None, help="default: every core")
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "--clock",
        default="wall",
        choices=sorted(CLOCKS),
        help="cpu: this process's CPU time, blind to waiting for a shared core (use --threads 1)",
    )
    args = parser.parse_args()
    clock = CLOCKS[args.clock]

    device_manager = DeviceManager(args.device, args.threads)
    torch.manual_seed(0)
    model = create_model_from_config(MODEL)
    config = TrainingConfig(
        seq_len=SEQ_LEN,
        batch_size=BATCH_SIZE,
        total_steps=WARMUP_STEPS + args.steps,
        device=args.device,
        compile=args.compile,
    )
    with tempfile.TemporaryDirectory() as checkpoints:
        trainer = Trainer(
            model,
            RandomTokens(BATCH_SIZE, SEQ_LEN, MODEL.vocab_size),
            lambda: [],
            config,
            device_manager,
            checkpoints,
            fingerprint="benchmark",
        )
        on_cpu = trainer.device.type == "cpu"
        started = time.perf_counter()
        for _ in range(WARMUP_STEPS):
            trainer.train_step()
        warmup_seconds = time.perf_counter() - started

        flops_per_step = trainer.flops_per_token * trainer.tokens_per_step
        step_seconds, probes = [], [probe(trainer.device, clock)]
        if probes[0] is None:
            raise SystemExit(f"no bf16 peak known for {device_manager.get_device_info()['name']}")
        for _ in range(args.steps):
            if trainer.device.type == "cuda":
                torch.cuda.synchronize()
            started = clock()
            trainer.train_step()
            step_seconds.append(clock() - started)
            probes.append(probe(trainer.device, clock))

    step_mfu = [
        flops_per_step / seconds / max(probes[i], probes[i + 1])
        for i, seconds in enumerate(step_seconds)
    ]
    best_seconds, peak = min(step_seconds), max(probes)
    median_seconds = statistics.median(step_seconds)
    print(
        f"device {device_manager.get_device_info()['name']} ({trainer.device.type}), "
        f"{torch.get_num_threads()} threads, compile {args.compile}, {args.clock} clock, "
        f"{model.num_parameters():,} parameters"
    )
    print(
        f"model FLOPs per token {trainer.flops_per_token:,} "
        f"(6N = {6 * model.num_parameters(exclude_embeddings=True):,} + attention)"
    )
    print(f"warm-up {warmup_seconds:.1f} s for {WARMUP_STEPS} steps (compilation included)")
    print(
        f"step {best_seconds:.3f} s best, {median_seconds:.3f} s median: "
        f"{trainer.tokens_per_step / best_seconds:,.0f} tokens/s, "
        f"{flops_per_step / best_seconds / 1e9:.1f} GFLOP/s achieved at best"
    )
    peak_kind = "fp32 matmul, measured" if on_cpu else "bf16 dense, data sheet"
    print(
        f"peak {peak / 1e9:.1f} GFLOP/s ({peak_kind}; {len(probes)} probes "
        f"{min(probes) / 1e9:.1f}-{peak / 1e9:.1f})"
    )
    print(
        f"each step against the faster probe beside it: {' '.join(f'{m:.3f}' for m in step_mfu)} "
        f"(median {statistics.median(step_mfu):.3f})"
    )
    print(
        f"MFU {flops_per_step / best_seconds / peak:.3f} (best of {args.steps} steps / best probe)"
    )


if __name__ == "__main__":
    main()
