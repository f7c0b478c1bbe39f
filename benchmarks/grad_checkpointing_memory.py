"""Peak memory of training with and without gradient checkpointing.

    python benchmarks/grad_checkpointing_memory.py [--steps 2] [--batch-size 8] [--seq-len 256]

Runs a few `Trainer.train_step`s of the MFU benchmark's model (6 layers, 384 wide,
vocabulary 8000) in two fresh child processes, one per setting, each reporting its peak
resident set size (`ru_maxrss`) and its resident size just before the first step, so
the difference is what training itself holds: activations, gradients, optimizer state.
The last line is the ratio of the peaks.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time

import torch

from helox.model.config import ModelConfig
from helox.model.device import DeviceManager
from helox.model.network import create_model_from_config
from helox.train.config import TrainingConfig
from helox.train.loop import Trainer

MODEL = ModelConfig(
    vocab_size=8000,
    hidden_size=384,
    num_layers=6,
    num_attention_heads=6,
    max_position_embeddings=1024,
)


def resident_mib() -> float:
    """This process's resident set size now, in MiB."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def peak_resident_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class RandomTokens:
    def __init__(self, batch_size: int, seq_len: int):
        self.shape, self.generator = (batch_size, seq_len + 1), torch.Generator().manual_seed(0)

    def __next__(self):
        window = torch.randint(0, MODEL.vocab_size, self.shape, generator=self.generator)
        return window[:, :-1], window[:, 1:]

    def state(self) -> dict:
        return {}

    def load_state(self, state: dict) -> None:
        pass


def child(checkpointing: bool, steps: int, batch_size: int, seq_len: int) -> dict:
    """Train `steps` steps in this process; report its memory and time."""
    torch.manual_seed(0)
    config = TrainingConfig(
        seq_len=seq_len,
        batch_size=batch_size,
        total_steps=steps,
        gradient_checkpointing=checkpointing,
        device="cpu",
    )
    with tempfile.TemporaryDirectory() as checkpoints:
        trainer = Trainer(
            create_model_from_config(MODEL),
            RandomTokens(batch_size, seq_len),
            lambda: [],
            config,
            DeviceManager("cpu"),
            checkpoints,
            fingerprint="benchmark",
        )
        before = resident_mib()
        started = time.perf_counter()
        losses = [trainer.train_step().loss for _ in range(steps)]
        seconds = (time.perf_counter() - started) / steps
    return {
        "before_mib": before,
        "peak_mib": peak_resident_mib(),
        "seconds_per_step": seconds,
        "losses": losses,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--child", choices=["on", "off"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        report = child(args.child == "on", args.steps, args.batch_size, args.seq_len)
        print(json.dumps(report))
        return

    reports = {}
    for setting in ("off", "on"):
        command = [sys.executable, __file__, "--child", setting]
        command += ["--steps", str(args.steps), "--batch-size", str(args.batch_size)]
        command += ["--seq-len", str(args.seq_len)]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        reports[setting] = json.loads(output.strip().splitlines()[-1])
    print(
        f"model 6 x 384, vocabulary 8000, batch {args.batch_size} x {args.seq_len} tokens, "
        f"{args.steps} steps, {torch.get_num_threads()} threads"
    )
    for setting, report in reports.items():
        print(
            f"gradient checkpointing {setting:3s}: peak RSS {report['peak_mib']:7.0f} MiB, "
            f"{report['peak_mib'] - report['before_mib']:6.0f} MiB above the pre-training "
            f"{report['before_mib']:.0f} MiB, {report['seconds_per_step']:.2f} s/step"
        )
    same = reports["on"]["losses"] == reports["off"]["losses"]
    print(f"losses identical with and without: {same}")
    off, on = reports["off"], reports["on"]
    training_ratio = (on["peak_mib"] - on["before_mib"]) / (off["peak_mib"] - off["before_mib"])
    print(f"training memory with/without: {training_ratio:.2f}")
    print(f"peak RSS with/without: {on['peak_mib'] / off['peak_mib']:.2f}")


if __name__ == "__main__":
    main()
