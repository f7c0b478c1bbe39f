"""`helox plan` and the presets: shapes from depth, budgets from hours, memory, overlays."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from test_workflow import dry_run_jobs

from helox.cli.main import main
from helox.common.config_files import merged_config
from helox.model.config import ModelConfig, intermediate_size
from helox.model.lora_config import LoRAConfig
from helox.model.network import create_model_from_config
from helox.model.step_cost import adapter_parameters, block_parameters
from helox.pipeline.config import validate_config
from helox.pipeline.plan import (
    BUSY_MICRO_BATCH_TOKENS,
    DEVICES,
    GIB,
    PRESETS_DIR,
    USABLE_MEMORY,
    Sizing,
    count_model,
    estimate_memory,
    format_plan,
    largest_preset,
    learning_rate_for_width,
    make_plan,
    plan_for_depth,
    plan_for_hours,
    preset_overlay,
    shape_for_depth,
)
from helox.train.config import TrainingConfig
from helox.train.metrics import BF16_PEAK_FLOPS

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config.yaml"
# Each shipped preset: its device and the hours it was sized for.
PRESETS = {"rtx4090-24gb": "rtx4090", "a100-40gb": "a100-40gb", "h100-80gb": "h100"}
PRESET_HOURS = 4.0
GPU_BASE = TrainingConfig(seq_len=2048, optimizer="muon")


def test_depth_sets_width_heads_and_learning_rate() -> None:
    small, medium, odd = (shape_for_depth(d, 32768, 2048) for d in (12, 16, 17))
    assert (small.hidden_size, small.num_attention_heads) == (768, 12)  # heads of 64
    assert (medium.hidden_size, medium.num_attention_heads) == (1024, 8)  # heads of 128
    assert (odd.hidden_size, odd.num_attention_heads) == (1152, 9), "rounded up to whole heads"
    assert small.max_position_embeddings == 2048 and small.num_layers == 12
    assert learning_rate_for_width(128) == 6e-3
    assert learning_rate_for_width(512) == 3e-3
    with pytest.raises(ValueError, match="depth must be at least 1"):
        shape_for_depth(0, 100, 64)


def test_counts_come_from_the_model_itself() -> None:
    model = shape_for_depth(2, 500, 64)
    params, hidden, flops = count_model(model, 64)
    built = create_model_from_config(model)
    assert params == built.num_parameters()
    assert flops == built.flops_per_token(64)
    blocks = sum(p.numel() for n, p in built.named_parameters() if n.endswith("proj.weight"))
    assert hidden == blocks


def test_memory_counts_states_by_optimizer_and_activations_by_batch() -> None:
    model = shape_for_depth(4, 1000, 128)
    params, hidden, _ = count_model(model, 128)
    adamw = estimate_memory(model, 128, 4, "adamw")
    muon = estimate_memory(model, 128, 4, "muon")
    assert (adamw.weights, adamw.gradients, adamw.optimizer) == (6 * params, 4 * params, 8 * params)
    assert muon.optimizer == 4 * hidden + 8 * (params - hidden)
    double = estimate_memory(model, 128, 8, "adamw")
    assert double.activations == 2 * adamw.activations
    assert adamw.checkpointed_activations < adamw.activations
    assert adamw.total(True) < adamw.total(False)


def test_memory_per_gpu_under_ddp_and_fsdp() -> None:
    """DDP holds what one process holds (its gradients are its buckets); FSDP divides the
    fp32 weights, gradients and states among the processes and gathers the root and two
    blocks in bf16."""
    model = shape_for_depth(8, 1000, 128)
    params, hidden, _ = count_model(model, 128)
    alone = estimate_memory(model, 128, 4, "muon")
    assert estimate_memory(model, 128, 4, "muon", processes=8) == alone
    block = block_parameters(model)
    with torch.device("meta"):
        built = create_model_from_config(model)
    assert block == sum(p.numel() for p in built.model.layers[3].parameters())
    sharded = [estimate_memory(model, 128, 4, "muon", processes=n, fsdp=True) for n in (2, 8)]
    gathered = params - 8 * block + 2 * block
    assert sharded[1].weights == 4 * params // 8 + 2 * gathered
    assert sharded[1].optimizer == alone.optimizer // 8
    assert sharded[1].total(False) < sharded[0].total(False) < alone.total(False)
    assert sharded[1].activations == alone.activations, "each process holds its own rows"


def test_a_lora_stage_holds_frozen_weights_and_trains_only_its_adapters(
    tmp_path: Path, capsys
) -> None:
    """Gradients and AdamW's moments for the adapters alone (Muon takes none of them), the
    frozen weights as ever; `helox plan` prints each fine-tuning stage so."""
    model = shape_for_depth(12, 32768, 2048)
    params, _, _ = count_model(model, 2048)
    lora = LoRAConfig(rank=16)
    adapters = adapter_parameters(model, lora)
    width, mlp = model.hidden_size, intermediate_size(model)
    assert adapters == 12 * 16 * (4 * (width + width) + 3 * (width + mlp))
    full = estimate_memory(model, 2048, 4, "muon")
    tuned = estimate_memory(model, 2048, 4, "muon", lora=lora)
    assert (tuned.gradients, tuned.optimizer) == (4 * adapters, 8 * adapters)
    assert tuned.weights == 6 * (params + adapters) and tuned.activations == full.activations
    assert tuned.total(False) < full.total(False) - 8 * params  # 4 of gradients, 4+ of states
    sharded = estimate_memory(model, 2048, 4, "muon", processes=8, fsdp=True, lora=lora)
    assert sharded.optimizer == adapters and sharded.total(False) < tuned.total(False)
    overlay = tmp_path / "lora.yaml"
    overlay.write_text("sft: {lora: {rank: 16}}\n")
    assert main(["plan", "--config", str(CONFIG), "--config", str(overlay)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^sft memory .* GiB \(LoRA rank 16 on q_proj, .*: [\d,]+ trained;", out, re.M)
    assert re.search(r"^dpo memory .*\(every weight trains; checkpointing off: fits\)$", out, re.M)


def test_hours_buy_the_deepest_compute_optimal_model_that_fits() -> None:
    plan = plan_for_hours(4, Sizing("h100", GPU_BASE, 32768))
    budget = 4 * 3600 * DEVICES["h100"].peak_flops * plan.mfu
    assert plan.tokens * plan.flops_per_token == pytest.approx(budget, rel=0.01)
    assert plan.hours == pytest.approx(4, rel=0.01)
    assert plan.tokens >= 20 * plan.parameters and plan.fits
    deeper = shape_for_depth(plan.model.num_layers + 1, 32768, 2048)
    params, _, flops = count_model(deeper, 2048)
    assert 20 * params * flops > budget, "one layer more would not get its 20 tokens a parameter"
    assert plan.tokens_per_step <= 1 << 19 and plan.pretrain.total_steps >= 1000


def test_hours_on_eight_gpus_buy_eight_times_the_flops_and_give_each_its_rows() -> None:
    eight = dataclasses.replace(GPU_BASE, nproc=8)
    alone = plan_for_hours(4, Sizing("h100", GPU_BASE, 32768))
    plan = plan_for_hours(4, Sizing("h100", eight, 32768))
    assert plan.processes == 8 and plan.model.num_layers > alone.model.num_layers
    budget = 8 * 4 * 3600 * DEVICES["h100"].peak_flops * plan.mfu
    assert plan.tokens * plan.flops_per_token == pytest.approx(budget, rel=0.01)
    assert plan.hours == pytest.approx(4, rel=0.01) and plan.fits
    rows = plan.pretrain.batch_size * plan.pretrain.gradient_accumulation_steps * 8
    assert plan.tokens_per_step == rows * 2048 <= 1 << 19


def test_a_model_too_large_to_replicate_is_sharded() -> None:
    """Depth 48 (5.6 B parameters) cannot fit an RTX 4090 whole; across 8 of them it fits in
    FSDP's shards, and the printed plan says so."""
    plan = plan_for_depth(48, Sizing("rtx4090", dataclasses.replace(GPU_BASE, nproc=8), 32768))
    assert plan.pretrain.fsdp and plan.fits
    small = plan_for_depth(12, Sizing("h100", dataclasses.replace(GPU_BASE, nproc=8), 32768))
    assert not small.pretrain.fsdp, "a model DDP fits at a full micro-batch stays replicated"
    assert small.pretrain.batch_size * 2048 >= BUSY_MICRO_BATCH_TOKENS
    printed = format_plan(plan)
    assert "1 node × 8 GPUs, FSDP2 (sharded)" in printed and "× 8 processes" in printed


def test_depth_plan_trains_on_twenty_tokens_a_parameter() -> None:
    plan = plan_for_depth(12, Sizing("a100-40gb", GPU_BASE, 32768))
    assert plan.tokens == pytest.approx(20 * plan.parameters, rel=0.01)
    assert plan.fits
    peak = DEVICES["a100-40gb"].peak_flops
    assert plan.hours == pytest.approx(plan.tokens * plan.flops_per_token / peak / 0.35 / 3600)


def test_a_model_too_large_for_the_card_says_so() -> None:
    plan = plan_for_depth(48, Sizing("rtx4090", GPU_BASE, 32768))
    assert not plan.fits and plan.pretrain.gradient_checkpointing
    assert plan.memory.total(True) > USABLE_MEMORY * 24 * GIB


def test_device_peaks_agree_with_the_training_meters() -> None:
    meters = dict(BF16_PEAK_FLOPS)
    assert DEVICES["h100"].peak_flops == meters["H100"]
    assert DEVICES["a100-40gb"].peak_flops == DEVICES["a100-80gb"].peak_flops == meters["A100"]


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_is_what_plan_makes_and_a_valid_overlay_that_fits(name: str) -> None:
    path = PRESETS_DIR / f"{name}.yaml"
    shipped = yaml.safe_load(path.read_text())
    regenerated = make_plan([CONFIG], PRESETS[name], hours=PRESET_HOURS)
    assert shipped == preset_overlay(regenerated), f"rerun helox plan --write {path}"
    merged = merged_config([CONFIG, path])
    validate_config(merged)
    as_written = make_plan([CONFIG, path], PRESETS[name])
    assert as_written.fits, f"{name} does not fit {DEVICES[PRESETS[name]].label}"
    assert as_written.tokens == pytest.approx(regenerated.tokens)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_plan_prints_the_parameters_the_presets_model_has(name: str, capsys) -> None:
    path = PRESETS_DIR / f"{name}.yaml"
    assert main(["plan", "--config", str(CONFIG), "--config", str(path)]) == 0
    printed = re.search(r"^parameters\s+([\d,]+)", capsys.readouterr().out, re.M)[1]
    merged = merged_config([CONFIG, path])
    model = ModelConfig(**{**merged["model"], "vocab_size": merged["tokenizer"]["vocab_size"]})
    with torch.device("meta"):
        built = create_model_from_config(model)
    assert int(printed.replace(",", "")) == built.num_parameters()


def test_plan_writes_an_overlay(tmp_path: Path, capsys) -> None:
    target = tmp_path / "mine.yaml"
    argv = ["plan", "--config", str(CONFIG), "--device", "a100-80gb", "--depth", "6", "--write"]
    assert main([*argv, str(target)]) == 0
    out = capsys.readouterr().out
    assert "depth 6, width 384, 6 heads of 64" in out and f"wrote {target}" in out
    overlay = yaml.safe_load(target.read_text())
    assert overlay["model"]["num_layers"] == 6 and overlay["pretrain"]["seq_len"] == 2048
    assert main(["plan", "--device", "tpu"]) == 2
    assert "unknown device 'tpu'; use one of rtx4090" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_dry_run_plans_the_pretrain_job(name: str, tmp_path: Path) -> None:
    tracking = tmp_path / "tracking.yaml"
    tracking.write_text(yaml.safe_dump({"tracking": {"uri": f"sqlite:///{tmp_path}/m.db"}}))
    preset = PRESETS_DIR / f"{name}.yaml"
    jobs = dry_run_jobs(tmp_path, "results/pretrain/final", preset, tracking)
    assert jobs["pretrain"] == 1 and jobs["tokenizer"] == 1


def test_a_two_node_plan_is_an_overlay_the_workflow_submits_as_planned(tmp_path: Path) -> None:
    target = tmp_path / "cluster.yaml"
    argv = ["plan", "--config", str(CONFIG), "--hours", "24", "--nproc", "8", "--nodes", "2"]
    assert main([*argv, "--write", str(target)]) == 0
    assert "--device h100 --nproc 8 --nodes 2" in target.read_text().partition("\n")[0]
    overlay = yaml.safe_load(target.read_text())
    for stage in ("pretrain", "sft", "dpo"):
        assert (overlay[stage]["nproc"], overlay[stage]["nodes"]) == (8, 2)
    validate_config(merged_config([CONFIG, target]))
    assert make_plan([CONFIG, target], "h100").processes == 16
    command = [sys.executable, "-m", "snakemake", "results/dpo/final", "-n", "--cores", "2"]
    command += ["--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path)]
    command += ["--configfile", str(CONFIG), str(target)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    listing = result.stdout + result.stderr
    for rule in ("pretrain", "sft", "dpo"):
        job = listing.split(f"rule {rule}:")[1]
        resources = next(line for line in job.splitlines() if "resources:" in line)
        assert "nodes=2" in resources and "gres=gpu:8" in resources, resources


def test_largest_preset_for_the_card_at_hand() -> None:
    assert largest_preset(79.6).stem == "h100-80gb"  # what torch reports for an H100 80GB
    assert largest_preset(39.4).stem == "a100-40gb"
    assert largest_preset(23.6).stem == "rtx4090-24gb"
    with pytest.raises(ValueError, match="no preset fits a card of 12 GiB"):
        largest_preset(12)
