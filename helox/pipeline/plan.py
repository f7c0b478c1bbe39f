"""Size a model and its training by compute: one depth knob, a device and a time budget.

Everything follows from `depth` (as nanochat does): width 64·depth rounded up to whole
heads, heads of 64 below width 1024 and of 128 from there, a learning rate scaling as
1/sqrt(width) from the one measured for Helox's CPU model (6e-3 with Muon at width 128,
benchmarks/RESULTS.md). The token budget is `tokens_per_param` × parameters (Chinchilla's
20), or, given hours on a device, the FLOPs those hours buy at an assumed MFU, spent on the
deepest model whose compute-optimal budget they cover. On several GPUs (`nproc` per node ×
`nodes`) the hours buy that many times the FLOPs, each process takes its rows of every step,
and the plan shards the model with FSDP2 where that lets a larger micro-batch fit than DDP
does. `helox plan` prints the result and writes it as a `--configfile` overlay; the presets in
`helox/pipeline/presets/` are such overlays.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from helox.common.config_files import section_from_dict
from helox.model.config import ModelConfig, head_dim
from helox.model.step_cost import (
    DEVICES,
    GIB,
    Device,
    MemoryEstimate,
    count_model,
    estimate_memory,
)
from helox.pipeline.config import load_config, resolve_config
from helox.train.config import TrainingConfig

PRESETS_DIR = Path(__file__).with_name("presets")


# Helox's AdamW step reached 0.36 (124M) and 0.52 (1.3B) of an H100's peak (issue 16).
DEFAULT_MFU = 0.35
TOKENS_PER_PARAM = 20.0  # Chinchilla (Hoffmann et al. 2022)
BASE_WIDTH, BASE_LEARNING_RATE = 128, 6e-3
SFT_LEARNING_RATE_FRACTION = 1 / 6  # config.yaml's SFT 1e-3 against pretraining's 6e-3
MAX_TOKENS_PER_STEP = 1 << 19  # 524,288: Muon kept up with AdamW at 262k (issue 16)
MIN_STEPS = 1000
MAX_MICRO_BATCH = 64
# The H100 benchmark's micro-batches of 16 k tokens kept it at 0.38-0.54 MFU (issue 16).
BUSY_MICRO_BATCH_TOKENS = 1 << 14
USABLE_MEMORY = 0.9  # of the card; the rest is left to the allocator's fragmentation


def shape_for_depth(depth: int, vocab_size: int, seq_len: int) -> ModelConfig:
    """The model a depth stands for: width 64·depth in whole heads of 64 (128 from 1024)."""
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    head_width = 64 if 64 * depth < 1024 else 128
    width = head_width * math.ceil(64 * depth / head_width)
    return ModelConfig(
        vocab_size=vocab_size,
        hidden_size=width,
        num_layers=depth,
        num_attention_heads=width // head_width,
        max_position_embeddings=seq_len,
        tie_word_embeddings=False,
    )


def learning_rate_for_width(width: int) -> float:
    """Pretraining's peak learning rate, scaled as 1/sqrt(width) from the measured one."""
    return float(f"{BASE_LEARNING_RATE * math.sqrt(BASE_WIDTH / width):.2e}")


@dataclass(frozen=True)
class Plan:
    """A model, how it trains, and what that costs on `pretrain.nproc` × `pretrain.nodes`
    devices of one kind (`memory` is each one's)."""

    device: str
    mfu: float
    model: ModelConfig
    pretrain: TrainingConfig
    parameters: int
    flops_per_token: int
    memory: MemoryEstimate

    @property
    def processes(self) -> int:
        return self.pretrain.processes

    @property
    def tokens_per_step(self) -> int:
        p = self.pretrain
        return p.batch_size * p.seq_len * p.gradient_accumulation_steps * self.processes

    @property
    def tokens(self) -> int:
        return self.pretrain.total_steps * self.tokens_per_step

    @property
    def hours(self) -> float:
        peak = DEVICES[self.device].peak_flops * self.processes
        return self.tokens * self.flops_per_token / (peak * self.mfu) / 3600

    @property
    def fits(self) -> bool:
        usable = USABLE_MEMORY * DEVICES[self.device].memory_gib * GIB
        return self.memory.total(self.pretrain.gradient_checkpointing) <= usable


def device_of(name: str) -> Device:
    if name not in DEVICES:
        raise ValueError(f"unknown device {name!r}; use one of {', '.join(DEVICES)}")
    return DEVICES[name]


def choose_micro_batch(
    model: ModelConfig,
    seq_len: int,
    optimizer: str,
    usable_bytes: float,
    largest: int = MAX_MICRO_BATCH,
    processes: int = 1,
    fsdp: bool = False,
) -> tuple[int, bool, MemoryEstimate]:
    """(micro-batch, gradient checkpointing, memory): the largest power of two up to `largest`
    that fits, without checkpointing where any does; else 1 with checkpointing, which may not
    fit."""
    sizes = [largest >> i for i in range(int(math.log2(largest)) + 1)]
    for checkpointing in (False, True):
        for micro_batch in sizes:
            memory = estimate_memory(model, seq_len, micro_batch, optimizer, processes, fsdp)
            if memory.total(checkpointing) <= usable_bytes:
                return micro_batch, checkpointing, memory
    return 1, True, estimate_memory(model, seq_len, 1, optimizer, processes, fsdp)


def power_of_two_below(value: float) -> int:
    """The largest power of two at most `value`, and 1 below that."""
    return 2 ** int(math.log2(value)) if value >= 1 else 1


def choose_layout(
    model: ModelConfig, seq_len: int, optimizer: str, usable_bytes: float, processes: int, rows: int
) -> tuple[int, bool, bool, MemoryEstimate]:
    """(micro-batch, checkpointing, fsdp, memory) for each of `processes` GPUs, at most `rows`
    rows each: DDP, which gathers no weights, unless only FSDP's shards fit, or fit without
    checkpointing, or fit a micro-batch of `BUSY_MICRO_BATCH_TOKENS` where DDP's is smaller."""
    largest = min(MAX_MICRO_BATCH, power_of_two_below(rows))
    layouts = [False, True] if processes > 1 else [False]  # fsdp
    choices = {
        fsdp: choose_micro_batch(model, seq_len, optimizer, usable_bytes, largest, processes, fsdp)
        for fsdp in layouts
    }

    def rank(fsdp: bool) -> tuple[bool, bool, int]:
        micro_batch, checkpointing, memory = choices[fsdp]
        busy = min(micro_batch * seq_len, BUSY_MICRO_BATCH_TOKENS)
        return memory.total(checkpointing) <= usable_bytes, not checkpointing, busy

    fsdp = max(layouts, key=rank)  # the first of equals: DDP
    micro_batch, checkpointing, memory = choices[fsdp]
    return micro_batch, checkpointing, fsdp, memory


def plan_training(
    model: ModelConfig,
    base: TrainingConfig,
    tokens: int,
    device: str,
    mfu: float = DEFAULT_MFU,
) -> Plan:
    """Fit `model` to `base.nproc` × `base.nodes` of `device` for a budget of `tokens`: the
    layout `choose_layout` picks, at most 2^19 tokens a step (and a row for each process) and
    at least `MIN_STEPS` steps, the learning rate for its width, warm-up 2% of the steps."""
    usable = USABLE_MEMORY * device_of(device).memory_gib * GIB
    seq_len, processes = base.seq_len, base.processes
    params, _, flops_per_token = count_model(model, seq_len)
    step_tokens = max(processes * seq_len, min(MAX_TOKENS_PER_STEP, tokens // MIN_STEPS))
    micro_batch, checkpointing, fsdp, memory = choose_layout(
        model, seq_len, base.optimizer, usable, processes, step_tokens / (processes * seq_len)
    )
    micro_step_tokens = processes * micro_batch * seq_len
    accumulation = power_of_two_below(step_tokens / micro_step_tokens)
    total_steps = max(1, round(tokens / (micro_step_tokens * accumulation)))
    interval = max(1, total_steps // 10)
    pretrain = dataclasses.replace(
        base,
        batch_size=micro_batch,
        gradient_accumulation_steps=accumulation,
        learning_rate=learning_rate_for_width(model.hidden_size),
        total_steps=total_steps,
        warmup_steps=max(1, total_steps // 50),
        eval_steps=interval,
        save_steps=interval,
        log_steps=max(1, min(50, total_steps // 100)),
        gradient_checkpointing=checkpointing,
        fsdp=fsdp,
    )
    return Plan(device, mfu, model, pretrain, params, flops_per_token, memory)


@dataclass(frozen=True)
class Sizing:
    """What sizing a model by its depth or by hours holds fixed: the device, the training knobs
    (of the configs' pretrain section), the vocabulary, the tokens to train on for each
    parameter and the assumed MFU."""

    device: str
    base: TrainingConfig
    vocab_size: int
    tokens_per_param: float = TOKENS_PER_PARAM
    mfu: float = DEFAULT_MFU

    def model(self, depth: int) -> ModelConfig:
        """The model `depth` stands for, at this vocabulary and sequence length."""
        return shape_for_depth(depth, self.vocab_size, self.base.seq_len)

    def plan(self, model: ModelConfig, tokens: int) -> Plan:
        """`model` trained on `tokens` on this device (`plan_training`)."""
        return plan_training(model, self.base, tokens, self.device, self.mfu)


def plan_for_depth(depth: int, sizing: Sizing) -> Plan:
    """The depth's model trained on `sizing.tokens_per_param` tokens for each parameter."""
    model = sizing.model(depth)
    params, _, _ = count_model(model, sizing.base.seq_len)
    return sizing.plan(model, int(sizing.tokens_per_param * params))


def plan_for_hours(hours: float, sizing: Sizing, max_depth: int = 64) -> Plan:
    """The deepest model whose `tokens_per_param` budget the hours' FLOPs (on every process)
    cover and whose step fits the cards, trained on every token those FLOPs buy."""
    processes, peak_flops = sizing.base.processes, device_of(sizing.device).peak_flops
    budget = hours * 3600 * peak_flops * sizing.mfu * processes
    best = None
    for depth in range(1, max_depth + 1):
        model = sizing.model(depth)
        params, _, flops_per_token = count_model(model, sizing.base.seq_len)
        if flops_per_token * sizing.tokens_per_param * params > budget:
            break
        plan = sizing.plan(model, int(budget / flops_per_token))
        if plan.fits:
            best = plan
    if best is None:
        raise ValueError(
            f"{hours} hours on {processes} × {sizing.device} at MFU {sizing.mfu} do not cover "
            f"even depth 1 at {sizing.tokens_per_param} tokens per parameter"
        )
    return best


def config_model(config: dict[str, Any]) -> ModelConfig:
    """The model of a completed config, its vocabulary the tokenizer's where it sets none."""
    model = section_from_dict(ModelConfig, config["model"], "model")
    if model.vocab_size:
        return model
    return dataclasses.replace(model, vocab_size=config["tokenizer"]["vocab_size"])


def plan_for_config(config: dict[str, Any], device: str, mfu: float = DEFAULT_MFU) -> Plan:
    """The cost of a config's own model and pretraining, as written."""
    config = resolve_config(config)
    model = config_model(config)
    pretrain = section_from_dict(TrainingConfig, config["pretrain"], "pretrain")
    params, _, flops_per_token = count_model(model, pretrain.seq_len)
    memory = estimate_memory(
        model,
        pretrain.seq_len,
        pretrain.batch_size,
        pretrain.optimizer,
        pretrain.processes,
        pretrain.fsdp,
    )
    return Plan(device, mfu, model, pretrain, params, flops_per_token, memory)


def format_plan(plan: Plan) -> str:
    """The plan as the lines `helox plan` prints."""
    device, model, pretrain, memory = DEVICES[plan.device], plan.model, plan.pretrain, plan.memory
    step = (
        f"{pretrain.batch_size} × {pretrain.seq_len} tokens × "
        f"{pretrain.gradient_accumulation_steps} accumulation"
        + (f" × {plan.processes} processes" if plan.processes > 1 else "")
    )
    chosen = "on" if pretrain.gradient_checkpointing else "off"
    layout = "one process"
    if plan.processes > 1:
        layout = f"{pretrain.nodes} node{'s' * (pretrain.nodes > 1)} × {pretrain.nproc} GPUs, " + (
            "FSDP2 (sharded)" if pretrain.fsdp else "DDP (replicated)"
        )
    return "\n".join(
        [
            f"device          {device.label}: {device.peak_flops / 1e12:.0f} TFLOP/s bf16 dense, "
            f"{device.memory_gib:g} GiB",
            f"processes       {layout}",
            f"model           depth {model.num_layers}, width {model.hidden_size}, "
            f"{model.num_attention_heads} heads of {head_dim(model)}, "
            f"vocabulary {model.vocab_size}, sequence {pretrain.seq_len}",
            f"parameters      {plan.parameters:,}",
            f"FLOPs per token {plan.flops_per_token:,}",
            f"tokens          {plan.tokens:,} ({plan.tokens / plan.parameters:.1f} per parameter)",
            f"steps           {pretrain.total_steps:,} of {plan.tokens_per_step:,} tokens ({step})",
            f"learning rate   {pretrain.learning_rate:.2e} ({pretrain.optimizer}), "
            f"warm-up {pretrain.warmup_steps} steps",
            f"memory per GPU  {memory.breakdown()} "
            f"(checkpointing {chosen}: {'fits' if plan.fits else 'does NOT fit'})",
            f"time            {plan.hours:.2f} hours at MFU {plan.mfu:g}",
        ]
    )


def preset_overlay(plan: Plan) -> dict[str, Any]:
    """The plan as a `--configfile` overlay for the Snakefile (SFT and DPO on the same
    processes)."""
    model, pretrain = plan.model, plan.pretrain
    launch = {}
    if plan.processes > 1:
        launch = {"nproc": pretrain.nproc, "nodes": pretrain.nodes, "fsdp": pretrain.fsdp}
    training_keys = (
        "seq_len",
        "batch_size",
        "gradient_accumulation_steps",
        "learning_rate",
        "total_steps",
        "warmup_steps",
        "eval_steps",
        "save_steps",
        "log_steps",
        "gradient_checkpointing",
    )
    return {
        "tokenizer": {"vocab_size": model.vocab_size},
        "model": {
            "vocab_size": None,
            "hidden_size": model.hidden_size,
            "num_layers": model.num_layers,
            "num_attention_heads": model.num_attention_heads,
            "max_position_embeddings": model.max_position_embeddings,
            "tie_word_embeddings": model.tie_word_embeddings,
        },
        "pretrain": {
            **{key: getattr(pretrain, key) for key in training_keys},
            "optimizer": pretrain.optimizer,
            "device": "cuda",
            **launch,
        },
        "sft": {
            "seq_len": pretrain.seq_len,
            "batch_size": pretrain.batch_size,
            "learning_rate": float(f"{pretrain.learning_rate * SFT_LEARNING_RATE_FRACTION:.2e}"),
            "gradient_checkpointing": pretrain.gradient_checkpointing,
            "device": "cuda",
            **launch,
        },
        **({"dpo": launch} if launch else {}),
    }


def runtime_minutes(plan: Plan) -> int:
    """What the pretrain job should ask a scheduler for: the planned time, a fifth more and half
    an hour for start-up and evaluation."""
    return math.ceil(plan.hours * 60 * 1.2) + 30


def write_preset(plan: Plan, path: str | Path) -> None:
    """Write the plan's overlay to `path`, headed by what it was sized for."""
    pretrain = plan.pretrain
    launch = f"--nproc {pretrain.nproc} --nodes {pretrain.nodes} " if plan.processes > 1 else ""
    header = (
        f"# {DEVICES[plan.device].label}, made by `helox plan --device {plan.device} "
        f"{launch}...`:\n"
        f"# {plan.parameters:,} parameters, {plan.tokens:,} tokens "
        f"({plan.tokens / plan.parameters:.1f} per parameter), about {plan.hours:.1f} hours\n"
        f"# at MFU {plan.mfu:g}. Point corpus.raw_dir at a corpus of that many tokens, "
        "and give the\n"
        f"# pretrain job {runtime_minutes(plan)} minutes in your workflow profile's "
        "set-resources.\n"
    )
    Path(path).write_text(header + yaml.safe_dump(preset_overlay(plan), sort_keys=False))


def make_plan(
    config_paths: list[str | Path],
    device: str,
    hours: float | None = None,
    depth: int | None = None,
    seq_len: int = 2048,
    vocab_size: int = 32768,
    tokens_per_param: float = TOKENS_PER_PARAM,
    mfu: float = DEFAULT_MFU,
    nproc: int | None = None,
    nodes: int | None = None,
) -> Plan:
    """What `helox plan` prints: sized by `hours` or `depth` (other training knobs from the
    configs' pretrain section), else the configs' own model and pretraining as written;
    `nproc` and `nodes`, where given, replace the configs' processes."""
    device_of(device)
    config = load_config(config_paths)
    launch = {k: v for k, v in (("nproc", nproc), ("nodes", nodes)) if v is not None}
    config["pretrain"] = dict(config.get("pretrain") or {}, **launch)
    if hours is None and depth is None:
        return plan_for_config(config, device, mfu)
    pretrain = dict(config["pretrain"], seq_len=seq_len)
    base = section_from_dict(TrainingConfig, pretrain, "pretrain")
    sizing = Sizing(device, base, vocab_size, tokens_per_param, mfu)
    if hours is not None:
        return plan_for_hours(hours, sizing)
    return plan_for_depth(depth, sizing)


def preset_devices() -> dict[Path, str]:
    """Each shipped preset and the device named in its first line."""
    found = {}
    for path in sorted(PRESETS_DIR.glob("*.yaml")):
        first_line = path.read_text(encoding="utf-8").partition("\n")[0]
        found[path] = next(name for name in DEVICES if f"--device {name} " in first_line)
    return found


def largest_preset(memory_gib: float) -> Path:
    """The preset for the largest card with no more memory than `memory_gib`, as the driver
    reports it (an "80 GB" H100 reports 79.6)."""
    fitting = [
        (DEVICES[device].memory_gib, path)
        for path, device in preset_devices().items()
        if 0.95 * DEVICES[device].memory_gib <= memory_gib
    ]
    if not fitting:
        raise ValueError(f"no preset fits a card of {memory_gib:g} GiB")
    return max(fitting)[1]
