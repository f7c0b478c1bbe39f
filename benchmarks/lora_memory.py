"""Peak memory and throughput of an SFT step: full fine-tuning against LoRA, same model.

    python benchmarks/lora_memory.py [--steps 3] [--batch-size 4] [--seq-len 256] [--rank 8]
                                     [--dropout 0.0] [--threads N] [--device cpu|cuda]

Builds a 12 × 768 model over a vocabulary of 32,000 (110 M parameters) in two fresh child
processes. One trains every weight; the other freezes them under `sft.lora`'s adapters
(rank 8, alpha 16, all seven projections, no dropout: `helox.tune.sft.tuned_model`'s
`apply_lora`). Each
runs `--steps` optimizer steps of SFT's shape (a row whose first half is prompt, masked out of
the loss) through the stage's `Trainer` with AdamW. On the CPU a child reports its peak
resident set size over the steps (the kernel's high-water mark, reset once the model is
built) and the size before them; on CUDA the peak of allocated memory over the steps.
Tokens per second are timed over the steps after the first (whose optimizer state is
allocated then): on the CPU by this process's CPU time as well as the wall clock, since on
a shared machine the wall clock mostly measures the other jobs (benchmarks/train_mfu.py's
`--clock cpu`). The last lines are the ratios, LoRA over full fine-tuning.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time

import torch

from helox.model.config import ModelConfig
from helox.model.device import DeviceManager
from helox.model.lora import apply_lora
from helox.model.lora_config import LoRAConfig
from helox.model.network import IGNORE_INDEX, create_model_from_config
from helox.train.config import TrainingConfig
from helox.train.loop import Trainer

MODEL = ModelConfig(
    vocab_size=32000,
    hidden_size=768,
    num_layers=12,
    num_attention_heads=12,
    max_position_embeddings=1024,
)


def resident_mib(field: str) -> float:
    """A `/proc/self/status` size of this process (VmRSS now, VmHWM its peak), in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak_resident() -> None:
    """Start the high-water mark of resident memory again from the current size."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


class PromptAndResponse:
    """Rows of random tokens whose first half is the prompt (no loss) and second the response."""

    def __init__(self, batch_size: int, seq_len: int):
        self.shape, self.generator = (batch_size, seq_len + 1), torch.Generator().manual_seed(0)

    def __next__(self):
        window = torch.randint(0, MODEL.vocab_size, self.shape, generator=self.generator)
        labels = window[:, 1:].clone()
        labels[:, : labels.size(1) // 2] = IGNORE_INDEX
        return window[:, :-1], labels

    def state(self) -> dict:
        return {}

    def load_state(self, state: dict) -> None:
        pass


def child(
    lora: LoRAConfig | None,
    steps: int,
    batch_size: int,
    seq_len: int,
    device: str,
    threads: int | None,
) -> dict:
    """Train `steps` steps in this process; report its memory and throughput."""
    torch.manual_seed(0)
    model = create_model_from_config(MODEL)
    if lora is not None:
        apply_lora(model, lora, "sft.lora")
    config = TrainingConfig(
        seq_len=seq_len, batch_size=batch_size, total_steps=steps, device=device, compile=False
    )
    with tempfile.TemporaryDirectory() as checkpoints:
        trainer = Trainer(
            model,
            PromptAndResponse(batch_size, seq_len),
            lambda: [],
            config,
            DeviceManager(device, threads),
            checkpoints,
            fingerprint="benchmark",
        )
        cuda = trainer.device.type == "cuda"
        before = torch.cuda.memory_allocated() / 2**20 if cuda else resident_mib("VmRSS")
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        else:
            reset_peak_resident()
        losses = [trainer.train_step().loss]
        started, cpu_started = time.perf_counter(), time.process_time()
        losses += [trainer.train_step().loss for _ in range(steps - 1)]
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else resident_mib("VmHWM")
    tokens = (steps - 1) * batch_size * seq_len
    return {
        "parameters": model.num_parameters(),
        "trained": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "before_mib": before,
        "peak_mib": peak,
        "tokens_per_second": tokens / wall,
        "tokens_per_cpu_second": None if cuda else tokens / cpu,
        "losses": losses,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--dropout", type=float, default=LoRAConfig.dropout)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="CPU threads (default: every core)")
    parser.add_argument("--child", choices=["full", "lora"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be at least 2: the first step is not timed")
    if args.child:
        lora = (
            LoRAConfig(args.rank, 2.0 * args.rank, args.dropout) if args.child == "lora" else None
        )
        report = child(lora, args.steps, args.batch_size, args.seq_len, args.device, args.threads)
        print(json.dumps(report))
        return

    reports = {}
    for setting in ("full", "lora"):
        command = [sys.executable, __file__, "--child", setting, "--device", args.device]
        command += ["--steps", str(args.steps), "--batch-size", str(args.batch_size)]
        command += ["--seq-len", str(args.seq_len), "--rank", str(args.rank)]
        command += ["--dropout", str(args.dropout)]
        command += ["--threads", str(args.threads)] if args.threads else []
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        reports[setting] = json.loads(output.strip().splitlines()[-1])
    memory = "peak allocated" if args.device == "cuda" else "peak RSS"
    print(
        f"model 12 x 768, vocabulary 32000, {reports['full']['parameters']:,} parameters; "
        f"batch {args.batch_size} x {args.seq_len} tokens, {args.steps} steps, AdamW, LoRA "
        f"rank {args.rank} dropout {args.dropout}, "
        f"{args.device}, {args.threads or torch.get_num_threads()} threads"
    )
    for setting, report in reports.items():
        print(
            f"{setting:4s} ({report['trained']:>11,} trained): {memory} {report['peak_mib']:7.0f} "
            f"MiB ({report['peak_mib'] - report['before_mib']:6.0f} MiB above the "
            f"{report['before_mib']:.0f} MiB before the first step), "
            f"{report['tokens_per_second']:7.1f} tokens/s"
            + (
                f", {report['tokens_per_cpu_second']:.1f} tokens per CPU second"
                if report["tokens_per_cpu_second"]
                else ""
            )
        )
    full, lora = reports["full"], reports["lora"]
    print(f"{memory} LoRA/full: {lora['peak_mib'] / full['peak_mib']:.2f}")
    above = (lora["peak_mib"] - lora["before_mib"]) / (full["peak_mib"] - full["before_mib"])
    print(f"memory the steps add, LoRA/full: {above:.2f}")
    clock = "tokens_per_cpu_second" if full["tokens_per_cpu_second"] else "tokens_per_second"
    print(f"{clock.replace('_', ' ')} LoRA/full: {lora[clock] / full[clock]:.2f}")


if __name__ == "__main__":
    main()
