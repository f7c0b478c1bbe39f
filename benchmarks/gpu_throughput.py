"""Tokens per second of Helox's training step against a plain reference GPT, same device, same run.

    python benchmarks/gpu_throughput.py [--shapes 124m 1.3b] [--optimizers adamw muon]
        [--steps 20] [--warmup 3] [--json results.json] [--tiny] [--no-float8]

The reference is a GPT written here in the nanoGPT manner: learned positions, LayerNorm,
a GELU MLP of 4× width, one fused QKV projection, SDPA's causal (flash) kernel, the head tied
to the token embedding, fused AdamW, gradients clipped to norm 1. Helox runs
`Trainer.train_step` (its Llama-style model: RoPE, RMSNorm, SwiGLU of the same parameter
count, here with tied embeddings too) at the same depth, width, heads, sequence, vocabulary
and batch, on random tokens, with AdamW and with Muon. Both are compiled and run under bf16
autocast on CUDA; `--tiny` runs small shapes in fp32 eagerly on CPU, so the script is tested
without a GPU. MFU is each model's own training FLOPs per token (6 × weights in matmuls +
12·L·d·T for attention) times tokens per second over the device's dense bf16 peak (on CPU,
its fp32 matmul rate measured here).

The first shape is also trained as SFT: rows packed with synthetic conversations of varied
length by Helox's own `SFTBatches` (FlexAttention on CUDA, the dense mask on CPU), and its
tokens per second are set against pretraining's; and with 16 micro-batches a step (262 k
tokens at 1024), where Muon's orthogonalisation weighs less per token. Where torchao is
installed and the GPU has float8 tensor cores, every shape also runs AdamW with `float8:
true`. Last, every shape runs AdamW with the attention and MLP input projections one matmul
each ("separate"), as before `helox.model.network.project` fused them, to show what fusing buys.
Runs come in order of importance and each measurement is written to `--json` as it lands,
so a run cut short keeps what it measured. The last lines are the ratios: Muon over AdamW,
SFT over pretraining, fused over separate projections, and Helox over the reference, per
shape and run.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import math
import tempfile
import time
import unittest.mock
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from train_mfu import RandomTokens

import helox.model.network
from helox.model.config import ModelConfig
from helox.model.device import DeviceManager
from helox.model.network import create_model_from_config
from helox.model.step_cost import RUNTIME_BYTES, estimate_memory
from helox.tokens.chat import RenderedChat
from helox.train.config import TrainingConfig
from helox.train.float8 import FLOAT8_CAPABILITY
from helox.train.loop import Trainer
from helox.train.metrics import measure_matmul_peak, peak_flops
from helox.tune.sft_data import SFTBatches


@dataclass(frozen=True)
class Shape:
    layers: int
    width: int
    heads: int
    seq_len: int
    vocab_size: int
    batch_size: int


SHAPES = {
    "124m": Shape(12, 768, 12, 1024, 32768, 16),
    "1.3b": Shape(24, 2048, 16, 2048, 32768, 8),
}
TINY_SHAPES = {"tiny": Shape(2, 64, 2, 64, 512, 4)}


# ---------------------------------------------------------------------------- reference GPT


class ReferenceBlock(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.attn_norm = nn.LayerNorm(width, bias=False)
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.attn_out = nn.Linear(width, width, bias=False)
        self.mlp_norm = nn.LayerNorm(width, bias=False)
        self.mlp_in = nn.Linear(width, 4 * width, bias=False)
        self.mlp_out = nn.Linear(4 * width, width, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        batch, seq, width = x.shape
        qkv = self.qkv(self.attn_norm(x)).view(batch, seq, 3, self.heads, width // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.attn_out(attended.transpose(1, 2).reshape(batch, seq, width))
        return x + self.mlp_out(F.gelu(self.mlp_in(self.mlp_norm(x))))


class ReferenceGPT(nn.Module):
    def __init__(self, shape: Shape):
        super().__init__()
        self.token_embedding = nn.Embedding(shape.vocab_size, shape.width)
        self.position_embedding = nn.Embedding(shape.seq_len, shape.width)
        self.blocks = nn.ModuleList(
            ReferenceBlock(shape.width, shape.heads) for _ in range(shape.layers)
        )
        self.final_norm = nn.LayerNorm(shape.width, bias=False)
        self.head = nn.Linear(shape.width, shape.vocab_size, bias=False)
        self.head.weight = self.token_embedding.weight
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)

    def forward(self, ids: Tensor, targets: Tensor) -> Tensor:
        positions = torch.arange(ids.size(1), device=ids.device)
        x = self.token_embedding(ids) + self.position_embedding(positions)
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.final_norm(x))
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())

    def flops_per_token(self, seq_len: int) -> int:
        matmul_weights = sum(p.numel() for p in self.parameters()) - seq_len * self.head.in_features
        width, layers = self.head.in_features, len(self.blocks)
        return 6 * matmul_weights + 12 * layers * width * seq_len


def reference_step_fn(
    shape: Shape, device: torch.device, compiled: bool
) -> tuple[Callable[[], None], int]:
    """One optimizer step of the reference (forward, backward, clip, fused AdamW), and the
    model's training FLOPs per token."""
    model = ReferenceGPT(shape).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), fused=True)
    forward = torch.compile(model) if compiled else model
    batches = RandomTokens(shape.batch_size, shape.seq_len, shape.vocab_size)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def step() -> None:
        ids, targets = (t.to(device, non_blocking=True) for t in next(batches))
        with autocast:
            loss = forward(ids, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, model.flops_per_token(shape.seq_len)


# ---------------------------------------------------------------------------- Helox


def helox_model_config(shape: Shape) -> ModelConfig:
    return ModelConfig(
        vocab_size=shape.vocab_size,
        hidden_size=shape.width,
        num_layers=shape.layers,
        num_attention_heads=shape.heads,
        max_position_embeddings=shape.seq_len,
        tie_word_embeddings=True,
    )


def synthetic_conversations(shape: Shape, count: int = 2000) -> list[RenderedChat]:
    """Token ids of varied length (log-normal, median a tenth of a row); the first 40% of
    each, the prompt, untrained."""
    rng = np.random.default_rng(0)
    lengths = np.clip(rng.lognormal(math.log(shape.seq_len / 10), 0.8, count), 8, shape.seq_len)
    examples = []
    for length in lengths.astype(int):
        ids = rng.integers(0, shape.vocab_size, length + 1).tolist()
        prompt = int(0.4 * length)
        examples.append(RenderedChat(ids, [False] * prompt + [True] * (length + 1 - prompt)))
    return examples


@dataclass(frozen=True)
class HeloxRun:
    optimizer: str = "adamw"
    sft: bool = False
    float8: bool = False
    micro_batches: int = 1
    fused: bool = True

    @property
    def name(self) -> str:
        words = ["helox", self.optimizer]
        if not self.fused:
            words.append("separate")
        if self.sft:
            words.append("sft")
        if self.float8:
            words.append("float8")
        if self.micro_batches > 1:
            words.append(f"x{self.micro_batches}")
        return " ".join(words)


def helox_trainer(
    shape: Shape, run: HeloxRun, device: str, compiled: bool, checkpoints: str
) -> Trainer:
    torch.manual_seed(0)
    model = create_model_from_config(helox_model_config(shape))
    if run.sft:
        batches = SFTBatches(
            synthetic_conversations(shape), shape.batch_size, 0, shape.seq_len, pad_id=0
        )  # random ids of no tokenizer: any pad id will do, padding is masked
    else:
        batches = RandomTokens(shape.batch_size, shape.seq_len, shape.vocab_size)
    config = TrainingConfig(
        seq_len=shape.seq_len,
        batch_size=shape.batch_size,
        gradient_accumulation_steps=run.micro_batches,
        optimizer=run.optimizer,
        float8=run.float8,
        learning_rate=3e-4,
        warmup_steps=0,
        total_steps=1_000_000,
        device=device,
        compile=compiled,
    )
    return Trainer(
        model, batches, lambda: [], config, DeviceManager(device), checkpoints, "benchmark"
    )


# ---------------------------------------------------------------------------- timing


@dataclass
class Measurement:
    shape: str
    run: str
    tokens_per_second: float
    mfu: float
    peak_memory_gib: float | None = None
    estimated_memory_gib: float | None = None


def time_steps(step: Callable[[], object], device: torch.device, warmup: int, steps: int) -> float:
    """Seconds per step over `steps` steps after `warmup` (compilation happens there)."""
    for _ in range(warmup):
        step()
    synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return (time.perf_counter() - started) / steps


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def release(device: torch.device) -> None:
    """Start a run afresh: memory freed and counted from zero, and no compiled code of an
    earlier run, whose cache would otherwise fill (past torch's recompile limit a model runs
    eagerly) or mark shapes dynamic after the first shape changed."""
    torch._dynamo.reset()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gib(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / (1 << 30)


def projections(fused: bool) -> contextlib.AbstractContextManager:
    """Helox as it is, or with its training projections run one matmul each, as before
    `helox.model.network.project` fused them: the comparison that shows what fusing buys."""
    if fused:
        return contextlib.nullcontext()
    fused_project = helox.model.network.project

    def separate(x: Tensor, layers: tuple[nn.Linear, ...], fuse: bool) -> tuple[Tensor, ...]:
        return fused_project(x, layers, fuse=False)

    return unittest.mock.patch.object(helox.model.network, "project", separate)


def measure_helox(
    name: str, shape: Shape, run: HeloxRun, args: argparse.Namespace, peak: float
) -> Measurement:
    device = torch.device(args.device)
    release(device)
    with tempfile.TemporaryDirectory() as checkpoints, projections(run.fused):
        trainer = helox_trainer(shape, run, args.device, args.compile, checkpoints)
        steps = max(2, args.steps // run.micro_batches)
        seconds = time_steps(trainer.train_step, device, args.warmup, steps)
        tokens_per_second = trainer.tokens_per_step / seconds
        memory = estimate_memory(
            trainer.model.config, shape.seq_len, shape.batch_size, run.optimizer
        ).total(False)
        measured = Measurement(
            name,
            run.name,
            tokens_per_second,
            tokens_per_second * trainer.flops_per_token / peak,
            peak_memory_gib(device),
            (memory - RUNTIME_BYTES) / (1 << 30),
        )
        del trainer
    return measured


def measure_reference(
    name: str, shape: Shape, args: argparse.Namespace, peak: float
) -> Measurement:
    device = torch.device(args.device)
    release(device)
    torch.manual_seed(0)
    step, flops_per_token = reference_step_fn(shape, device, args.compile)
    seconds = time_steps(step, device, args.warmup, args.steps)
    tokens_per_second = shape.batch_size * shape.seq_len / seconds
    measured = Measurement(
        name,
        "reference adamw",
        tokens_per_second,
        tokens_per_second * flops_per_token / peak,
        peak_memory_gib(device),
    )
    del step
    return measured


def device_peak(device: torch.device) -> float:
    if device.type == "cpu":
        return measure_matmul_peak()
    peak = peak_flops(device)
    if peak is None:
        raise SystemExit(f"no bf16 peak known for {torch.cuda.get_device_name(device)}")
    return peak


def float8_available(device: torch.device) -> bool:
    """torchao is installed and the GPU has float8 tensor cores."""
    if device.type != "cuda" or torch.cuda.get_device_capability(device) < FLOAT8_CAPABILITY:
        return False
    try:
        import torchao.float8  # noqa: F401
    except ImportError:
        return False
    return True


def planned_runs(
    shapes: dict[str, Shape], optimizers: list[str], float8: bool
) -> list[tuple[str, HeloxRun | None]]:
    """(shape, run) in order of importance; None is the reference."""
    first = next(iter(shapes))
    plan: list[tuple[str, HeloxRun | None]] = []
    for name in shapes:
        plan.append((name, None))
        plan += [(name, HeloxRun(optimizer)) for optimizer in optimizers]
        if name == first:
            plan.append((name, HeloxRun(optimizers[0], sft=True)))
    plan += [(name, HeloxRun(float8=True)) for name in shapes if float8]
    plan += [(first, HeloxRun(optimizer, micro_batches=16)) for optimizer in optimizers]
    plan += [(name, HeloxRun(optimizers[0], fused=False)) for name in shapes]
    return plan


Speeds = dict[tuple[str, HeloxRun | None], float]  # tokens/s by (shape, run); None: reference


def ratio_lines(speeds: Speeds, device: torch.device) -> list[str]:
    """Muon over AdamW, SFT over pretraining, fused over separate projections, and Helox over
    the reference, as measured."""
    kernel = "FlexAttention" if device.type == "cuda" else "dense mask"
    lines, ratios = [], []
    for (shape, run), tokens in speeds.items():
        if run is None:
            continue
        adamw = speeds.get((shape, dataclasses.replace(run, optimizer="adamw")))
        if run.optimizer == "muon" and adamw:
            lines.append(f"Muon/AdamW tokens/s ({shape} {run.name}): {tokens / adamw:.3f}")
        pretraining = speeds.get((shape, dataclasses.replace(run, sft=False)))
        if run.sft and pretraining:
            lines.append(
                f"SFT/pretraining tokens/s ({shape}, {run.optimizer}, packed rows, {kernel}): "
                f"{tokens / pretraining:.3f}"
            )
        separate = speeds.get((shape, dataclasses.replace(run, fused=False)))
        if run.fused and separate:
            lines.append(
                f"fused/separate projections tokens/s ({shape} {run.name}): {tokens / separate:.3f}"
            )
        if (shape, None) in speeds:
            ratios.append(
                f"{shape} {run.name.removeprefix('helox ')} {tokens / speeds[shape, None]:.3f}"
            )
    return [*lines, "Helox/reference tokens/s: " + ", ".join(ratios)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--optimizers", nargs="+", default=["adamw", "muon"])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (compiling)")
    parser.add_argument("--json", default=None, help="write every measurement here")
    parser.add_argument("--tiny", action="store_true", help="small shapes on CPU, uncompiled")
    parser.add_argument("--no-float8", action="store_true", help="skip the float8 runs")
    args = parser.parse_args()
    if args.tiny:
        shapes, args.device, args.compile = TINY_SHAPES, "cpu", False
    else:
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device: run on a GPU, or pass --tiny")
        shapes = {name: SHAPES[name] for name in args.shapes}
        args.device, args.compile = "cuda", True
        torch.backends.cuda.matmul.allow_tf32 = True
    device = torch.device(args.device)
    peak = device_peak(device)
    name_of_device = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device {name_of_device}, peak {peak / 1e9:,.0f} GFLOP/s, torch {torch.__version__}")
    float8 = not args.no_float8 and float8_available(device)

    results: list[Measurement] = []
    speeds: Speeds = {}
    for name, run in planned_runs(shapes, args.optimizers, float8):
        shape = shapes[name]
        if run is None:
            tokens = shape.batch_size * shape.seq_len
            print(f"shape {name}: {asdict(shape)}, {tokens:,} tokens a micro-batch")
        try:
            if run is None:
                measured = measure_reference(name, shape, args, peak)
            else:
                measured = measure_helox(name, shape, run, args, peak)
        except Exception as error:  # one failed run must not cost the others
            print(f"  {name} {run.name if run else 'reference'} failed: {error!r}")
            continue
        results.append(measured)
        speeds[name, run] = measured.tokens_per_second
        report(measured)
        if args.json:
            with open(args.json, "w", encoding="utf-8") as out:
                json.dump([asdict(r) for r in results], out, indent=2)
    print("\n".join(ratio_lines(speeds, device)))


def report(measured: Measurement) -> None:
    memory = ""
    if measured.peak_memory_gib is not None:
        memory = f", peak memory {measured.peak_memory_gib:.1f} GiB"
        if measured.estimated_memory_gib is not None:
            memory += f" (helox plan's estimate {measured.estimated_memory_gib:.1f})"
    print(
        f"  {measured.shape:<5} {measured.run:<22} {measured.tokens_per_second:>12,.0f} tokens/s  "
        f"MFU {measured.mfu:.3f}{memory}"
    )


if __name__ == "__main__":
    main()
