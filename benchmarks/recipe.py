"""Validation bits per byte for a fixed training budget: the shipped recipe against a baseline.

    python benchmarks/recipe.py [--budget-minutes 10] [--clock wall|cpu] [--threads 2]
        [--parallel] [--manifest results/shards/manifest.json]
        [--tokenizer results/tokenizer/files] [--config config.yaml]
        [--arms baseline recipe] [--set SECTION.KEY=VALUE ...] [--json FILE --label NAME]

Two arms train on the same shards for the same budget, one after the other, or with
`--parallel` side by side in one process each (`--threads 1 --parallel` gives each arm
one of 2 cores, and the comparison takes the budget once instead of twice):
- baseline: a GPT-2-style model built with Helox's own switches (LayerNorm, GELU MLP,
  learned positions, tied embeddings) and AdamW with linear warmup and cosine decay, at
  the shape and learning rate that gave it the lowest bits per byte in the sweep logged
  in benchmarks/RESULTS.md;
- recipe: the `model` and `pretrain` sections of `config.yaml` as shipped.
`--set` overrides a key of every arm run (`--set model.hidden_size=96`), for sweeps.

The budget counts training steps only (data loading, forward, backward, optimizer); the
validation pass runs after it, outside the clock. `--clock cpu` reads this process's CPU
time divided by the torch thread count, which equals wall time on an idle machine and
hardly moves when other processes share the cores.

The learning-rate schedule ends at the budget although the step count is not known in
advance: after `CALIBRATION_STEPS` steps, and again after every step until 90% of the
estimate, `total_steps` is set to the steps done plus the budget left over the mean step
time so far (the first `UNTIMED_STEPS` left out), and the schedule (cosine or WSD) is
rebuilt for it. Training stops at `total_steps` or at the budget, whichever comes first.

Both arms are scored by `Trainer.evaluate` over every window of the manifest's val split
at the arm's own sequence length: bits per byte = summed nats / ln 2 / the UTF-8 bytes of
the scored tokens, which compares across tokenizers. The ratio recipe / baseline is
printed last.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import multiprocessing
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch
import yaml

from helox.common.config_files import load_mapping, section_from_dict
from helox.model.config import ModelConfig
from helox.model.device import DeviceManager
from helox.model.network import create_model_from_config
from helox.tokens.loader import PackedBatches, TokenStream, eval_batches
from helox.train.config import TrainingConfig
from helox.train.loop import Trainer, seed_everything
from helox.train.metrics import token_byte_lengths
from helox.train.pretrain import resolve_vocab_size
from helox.train.schedule import make_schedule

CALIBRATION_STEPS = 10
UNTIMED_STEPS = 2  # they allocate memory and warm caches; left out of the mean step time
EVAL_BATCH_SIZE = 16
SEED = 1337

# The baseline's shape and learning rate are the best of its own sweep (benchmarks/RESULTS.md).
BASELINE: dict[str, dict[str, Any]] = {
    "model": {
        "hidden_size": 128,
        "num_layers": 1,
        "num_attention_heads": 2,
        "max_position_embeddings": 256,
        "use_rms_norm": False,
        "use_swiglu": False,
        "use_rope_embeddings": False,
        "tie_word_embeddings": True,
    },
    "pretrain": {
        "seq_len": 256,
        "batch_size": 8,
        "learning_rate": 3e-3,
        "min_lr_ratio": 0.1,
        "lr_schedule": "cosine",
        "weight_decay": 0.1,
        "warmup_steps": 50,
    },
}


def cpu_clock() -> float:
    """This process's CPU seconds over the torch thread count: wall time when undisturbed."""
    return time.process_time() / torch.get_num_threads()


CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": cpu_clock}


def arm_sections(arm: str, config_path: Path) -> dict[str, dict[str, Any]]:
    """The `model` and `pretrain` mappings of one arm, before overrides."""
    if arm == "baseline":
        return json.loads(json.dumps(BASELINE))
    config = load_mapping(config_path)
    return {"model": dict(config["model"]), "pretrain": dict(config["pretrain"])}


def apply_overrides(sections: dict[str, dict[str, Any]], overrides: list[str]) -> None:
    """Set each `section.key=value` (value read as YAML) in `sections`."""
    for item in overrides:
        key, _, value = item.partition("=")
        section, _, name = key.partition(".")
        if section not in sections or not name:
            raise SystemExit(f"--set {item}: expected model.KEY=VALUE or pretrain.KEY=VALUE")
        parsed = yaml.safe_load(value)
        if isinstance(parsed, str):  # YAML 1.1 reads 6e-3 as a string
            with contextlib.suppress(ValueError):
                parsed = float(parsed)
        sections[section][name] = parsed


def train_for_budget(
    model_config: ModelConfig,
    training: TrainingConfig,
    manifest: Path,
    token_bytes: torch.Tensor,
    budget_seconds: float,
    clock: Callable[[], float],
    device_manager: DeviceManager,
) -> dict[str, Any]:
    """Train from scratch until the budget runs out, then score the whole val split."""
    train_stream, val_stream = TokenStream(manifest, "train"), TokenStream(manifest, "val")
    model_config = resolve_vocab_size(model_config, train_stream.vocab_size)
    training = dataclasses.replace(
        training, total_steps=10**9, eval_batches=10**9, device="cpu", compile=False
    )
    seed_everything(SEED)
    model = create_model_from_config(model_config)
    batches = PackedBatches(train_stream, training.seq_len, training.batch_size, SEED)
    with tempfile.TemporaryDirectory() as checkpoints:
        trainer = Trainer(
            model,
            batches,
            lambda: eval_batches(val_stream, training.seq_len, EVAL_BATCH_SIZE),
            training,
            device_manager,
            checkpoints,
            fingerprint="recipe",
            token_bytes=token_bytes,
        )
        total_steps, wall_started, started = training.total_steps, time.perf_counter(), clock()
        calibrated_at = started
        while trainer.progress.step < total_steps and clock() - started < budget_seconds:
            trainer.train_step()
            step, elapsed = trainer.progress.step, clock() - started
            if step == UNTIMED_STEPS:
                calibrated_at = clock()
            if step >= CALIBRATION_STEPS and step < 0.9 * total_steps:
                seconds_per_step = (clock() - calibrated_at) / (step - UNTIMED_STEPS)
                total_steps = step + max(1, int((budget_seconds - elapsed) / seconds_per_step))
                trainer.schedule = make_schedule(
                    dataclasses.replace(training, total_steps=total_steps)
                )
        train_seconds, wall_seconds = clock() - started, time.perf_counter() - wall_started
        metrics = trainer.evaluate()
    return {
        "val_bpb": metrics["val_bpb"],
        "val_loss": metrics["val_loss"],
        "steps": trainer.progress.step,
        "tokens": trainer.progress.tokens_seen,
        "parameters": model.num_parameters(),
        "train_seconds": round(train_seconds, 1),
        "wall_seconds": round(wall_seconds, 1),
        "final_loss": trainer.progress.loss_history[-1][1],
    }


def run_arm(arm: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train one arm for the budget in this process, on `args.threads` threads."""
    device_manager = DeviceManager("cpu", args.threads)
    sections = arm_sections(arm, args.config)
    apply_overrides(sections, args.set)
    return train_for_budget(
        section_from_dict(ModelConfig, sections["model"], f"{arm}.model"),
        section_from_dict(TrainingConfig, sections["pretrain"], f"{arm}.pretrain"),
        args.manifest,
        token_byte_lengths(args.tokenizer),
        60 * args.budget_minutes,
        CLOCKS[args.clock],
        device_manager,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget-minutes", type=float, default=10.0)
    parser.add_argument("--clock", default="wall", choices=sorted(CLOCKS))
    parser.add_argument("--threads", type=int, default=2, help="torch threads of each arm")
    parser.add_argument(
        "--parallel", action="store_true", help="train the arms at once, one process each"
    )
    parser.add_argument("--manifest", type=Path, default=Path("results/shards/manifest.json"))
    parser.add_argument("--tokenizer", type=Path, default=Path("results/tokenizer/files"))
    parser.add_argument("--config", type=Path, default=Path("config.yaml"))
    parser.add_argument("--arms", nargs="+", default=["baseline", "recipe"])
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--label", default="", help="a name for this run in --json")
    parser.add_argument("--json", type=Path, help="append one JSON line per arm to this file")
    args = parser.parse_args()

    print(
        f"budget {args.budget_minutes:g} min by the {args.clock} clock, {args.threads} threads "
        f"per arm{', arms side by side' if args.parallel else ''}, shards {args.manifest}",
        flush=True,
    )
    if args.parallel:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(len(args.arms), mp_context=context) as pool:
            results = list(pool.map(run_arm, args.arms, [args] * len(args.arms)))
    else:
        results = [run_arm(arm, args) for arm in args.arms]
    bpb: dict[str, float] = {}
    for arm, result in zip(args.arms, results, strict=True):
        bpb[arm] = result["val_bpb"]
        print(f"{arm}: val bpb {result['val_bpb']:.4f} " + json.dumps(result), flush=True)
        if args.json:
            record = {"label": args.label, "arm": arm, "set": args.set, **result}
            record |= {"budget_minutes": args.budget_minutes, "clock": args.clock}
            record |= {"threads": args.threads, "manifest": str(args.manifest)}
            with args.json.open("a", encoding="utf-8") as out:
                out.write(json.dumps(record) + "\n")
    if "baseline" in bpb and "recipe" in bpb:
        ratio = bpb["recipe"] / bpb["baseline"]
        print(
            f"baseline {bpb['baseline']:.4f} bpb, recipe {bpb['recipe']:.4f} bpb, "
            f"ratio recipe/baseline {ratio:.4f} ({100 * (1 - ratio):.1f}% lower)"
        )
    if not all(math.isfinite(v) for v in bpb.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
