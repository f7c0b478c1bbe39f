"""What of the GPU benchmark and session script runs without a GPU: the throughput script's
`--tiny` path on CPU, the open-model SFT benchmark's tiny shape, the session script's
syntax, and its pipeline overlay."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml
from test_workflow import dry_run_jobs

from helox.common.config_files import merged_config
from helox.pipeline.config import validate_config
from helox.pipeline.plan import PRESETS_DIR

REPO = Path(__file__).resolve().parents[1]
SESSION = REPO / "benchmarks" / "gpu_session.sh"


def run_benchmark(script: str, *args: str) -> str:
    """The standard output of a benchmark script run on one CPU thread, which must succeed."""
    completed = subprocess.run(
        [sys.executable, f"benchmarks/{script}", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout


def test_throughput_tiny_prints_positive_ratios_last(tmp_path: Path) -> None:
    results = tmp_path / "throughput.json"
    output = run_benchmark(
        "gpu_throughput.py", "--tiny", "--steps", "2", "--warmup", "1", "--json", str(results)
    )
    lines = output.strip().splitlines()
    assert lines[-1].startswith("Helox/reference tokens/s: tiny adamw ")
    ratios = dict(re.findall(r"tiny ([a-z0-9 ]+?) ([\d.]+)(?:,|$)", lines[-1]))
    assert set(ratios) == {"adamw", "muon", "adamw sft", "adamw x16", "muon x16", "adamw separate"}
    assert all(float(r) > 0 for r in ratios.values())
    sft = [
        re.fullmatch(r"SFT/pretraining tokens/s \(tiny, adamw, .*\): ([\d.]+)", x) for x in lines
    ]
    assert [float(m[1]) > 0 for m in sft if m] == [True]
    muon = [
        re.fullmatch(r"Muon/AdamW tokens/s \(tiny helox muon( x16)?\): ([\d.]+)", x) for x in lines
    ]
    assert sorted(m[1] or "" for m in muon if m) == ["", " x16"]
    fused = [
        re.fullmatch(r"fused/separate projections tokens/s \(tiny helox adamw\): ([\d.]+)", x)
        for x in lines
    ]
    assert [float(m[1]) > 0 for m in fused if m] == [True]
    runs = {m["run"]: m for m in json.loads(results.read_text())}
    assert set(runs) == {f"helox {run}" for run in ratios} | {"reference adamw"}
    assert all(m["tokens_per_second"] > 0 and m["mfu"] > 0 for m in runs.values())


def test_muon_step_benchmark_times_three_optimizers_on_cpu() -> None:
    output = run_benchmark("muon_step.py", "--steps", "1", "--warmup", "1")
    lines = output.strip().splitlines()
    assert "shape tiny: 14 hidden matrices" in lines[0]
    step_ms = dict(re.findall(r"^  (.+?) +([\d.]+) ms a step$", output, re.M))
    assert set(step_ms) == {"fused AdamW", "torch Muon", "helox Muon"}
    assert all(float(ms) > 0 for ms in step_ms.values())
    assert float(lines[-1].removeprefix("torch Muon / helox Muon seconds: ")) > 0


def test_session_script_parses() -> None:
    assert subprocess.run(["bash", "-n", str(SESSION)]).returncode == 0


def test_session_pipeline_overlay_is_valid_and_plans_pretrain_and_sft(tmp_path: Path) -> None:
    overlay = tmp_path / "smoke.yaml"
    overlay.write_text(
        subprocess.run(["bash", str(SESSION), "overlay"], capture_output=True, text=True).stdout
    )
    preset = PRESETS_DIR / "h100-80gb.yaml"
    merged = merged_config([REPO / "config.yaml", preset, overlay])
    validate_config(merged)
    assert (
        merged["model"]["hidden_size"] == yaml.safe_load(preset.read_text())["model"]["hidden_size"]
    )
    assert merged["pretrain"]["total_steps"] == 120 and not merged["tracking"]["enabled"]
    jobs = dry_run_jobs(tmp_path, "results/sft/final", preset, overlay)
    assert jobs["pretrain"] == 1 and jobs["sft"] == 1


def test_open_model_sft_benchmark_runs_both_sides_on_cpu(real_tokenizers: Path, tmp_path) -> None:
    figures_path = tmp_path / "open_model_sft.json"
    output = run_benchmark(
        "open_model_sft.py",
        *("--tokenizer", str(real_tokenizers / "llama3.2"), "--shape", "tiny"),
        *("--steps", "3", "--seq-len", "64", "--batch-size", "2", "--device", "cpu"),
        *("--json", str(figures_path)),
    )
    last = output.strip().splitlines()[-1]
    ratios = r"Helox/transformers \(tiny\): tokens/s ([\d.]+), peak memory ([\d.]+)"
    found = re.fullmatch(ratios, last)
    assert found and float(found[1]) > 0 and float(found[2]) > 0, last
    figures = json.loads(figures_path.read_text())
    assert figures["helox"]["parameters"] > 128_256 * 64  # the vocabulary's rows and more
    for side in ("helox", "transformers"):
        assert figures[side]["tokens_per_second"] > 0 and figures[side]["peak_memory_gib"] > 0
