"""The workflow end to end on a tiny config, then dry-runs after config edits."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from helox.model.folder import load_final
from helox.model.generate import Generator, SamplingConfig

REPO = Path(__file__).resolve().parents[1]

TINY = {
    "corpus": {"stdlib_max_bytes": 700_000},
    "clean": {"parts": 2},
    "tokenizer": {"vocab_size": 1000, "eval_docs": 20},
    "shards": {"parts": 2, "train_split": 0.8, "val_split": 0.1, "test_split": 0.1},
    "model": {
        "hidden_size": 64,
        "num_layers": 2,
        "num_attention_heads": 2,
        "max_position_embeddings": 128,
    },
    "pretrain": {
        "seq_len": 64,
        "batch_size": 16,
        "learning_rate": 1.0e-2,
        "total_steps": 80,
        "warmup_steps": 5,
        "eval_steps": 40,
        "eval_batches": 4,
        "save_steps": 40,
        "log_steps": 10,
    },
    "sft": {
        "max_pairs": 120,
        "seq_len": 128,
        "batch_size": 4,
        "total_steps": 12,
        "warmup_steps": 2,
        "eval_steps": 6,
        "eval_batches": 2,
        "save_steps": 6,
        "log_steps": 3,
    },
    "dpo": {
        "seq_len": 128,
        "batch_size": 4,
        "total_steps": 12,
        "warmup_steps": 2,
        "eval_steps": 6,
        "eval_batches": 4,
        "save_steps": 6,
        "log_steps": 3,
    },
    "eval": {
        "bpb_max_batches": 8,
        "humaneval": {"limit": 12, "max_new_tokens": 32},
        "next_line": {"examples": 40},
    },
}


def snakemake_command(workdir: Path, *args: str, overlay: dict | None = None) -> list[str]:
    """The Snakemake command for the repository's Snakefile in `workdir`, tiny config overlaid."""
    config = json.loads(json.dumps(TINY))
    config["tracking"] = {"uri": f"sqlite:///{workdir / 'results' / 'mlflow.db'}"}
    for section, values in (overlay or {}).items():
        config.setdefault(section, {}).update(values)
    overlay_path = workdir / "overlay.yaml"
    overlay_path.write_text(yaml.safe_dump(config))
    return [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(overlay_path),
        "--cores",
        "2",
        *args,
    ]


def snakemake(
    workdir: Path, *args: str, overlay: dict | None = None
) -> subprocess.CompletedProcess:
    """Run Snakemake on the repository's Snakefile in `workdir` with the tiny overlay."""
    command = snakemake_command(workdir, *args, overlay=overlay)
    return subprocess.run(command, capture_output=True, text=True, timeout=900)


def dry_run_jobs(workdir: Path, target: str, *configfiles: Path) -> dict[str, int]:
    """`planned_jobs` of a dry run to `target` in `workdir` with exactly `configfiles`."""
    command = [
        sys.executable,
        "-m",
        "snakemake",
        target,
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--cores",
        "2",
        "-n",
        "--configfile",
        *map(str, configfiles),
    ]
    return planned_jobs(subprocess.run(command, capture_output=True, text=True, timeout=900))


def planned_jobs(result: subprocess.CompletedProcess) -> dict[str, int]:
    """The job-stats table of a dry run, as {rule: count}, without the `all` target."""
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout + result.stderr
    if "Nothing to be done" in output:
        return {}
    table = output.split("Job stats:")[1].split("total")[0]
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)\s*$", table, flags=re.MULTILINE))
    jobs.pop("all", None)
    return {rule: int(count) for rule, count in jobs.items()}


def test_pipeline_produces_every_stage_output(pipeline):
    results = pipeline / "results"
    for folder in ("pretrain/final", "sft/final", "dpo/final"):
        for name in ("model.safetensors", "config.json", "tokenizer.model", "metrics.json"):
            assert (results / folder / name).is_file(), f"{folder}/{name}"
    manifest = json.loads((results / "shards" / "manifest.json").read_text())
    assert all(manifest["splits"][s]["tokens"] > 0 for s in ("train", "val"))
    assert json.loads((results / "tokenizer" / "eval.json").read_text())["roundtrip_ok"]
    stats = json.loads((results / "dedup" / "stats.json").read_text())
    assert stats["documents_out"] > 10
    for rule_log in ("clean/part-0.log", "tokenizer.log", "pretrain.log", "sft.log", "dpo.log"):
        assert (pipeline / "logs" / rule_log).is_file()


def test_pretrained_model_beats_a_unigram_model(pipeline):
    metrics = json.loads((pipeline / "results/pretrain/final/metrics.json").read_text())
    assert metrics["val_loss"] < metrics["unigram_val_loss"] - 0.3


def test_sft_reports_response_loss_before_and_after(pipeline):
    metrics = json.loads((pipeline / "results/sft/final/metrics.json").read_text())
    assert metrics["val_loss"] < metrics["base_val_loss"]


def test_generate_prints_text(pipeline):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "helox.cli",
            "generate",
            str(pipeline / "results/sft/final"),
            "--prompt",
            "Write a Python function that",
            "--max-new-tokens",
            "20",
            "--seed",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip()) > 0


def helox_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run the `helox` command in a fresh interpreter."""
    command = [sys.executable, "-m", "helox.cli", *args]
    return subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=300)


def test_sft_reports_the_padding_that_packing_saves(pipeline):
    """The tiny run's answers nearly fill a row, so packing can only match padding to the
    longest here; tests/test_sft_data.py shows it saving padding on shorter examples."""
    metrics = json.loads((pipeline / "results/sft/final/metrics.json").read_text())
    assert 0 <= metrics["padding_fraction"] <= metrics["padding_fraction_unpacked"] < 1


def test_chat_answers_turn_by_turn(pipeline):
    turns = "Write a function that reverses a list.\nAnd one for a string?\n\n"
    result = helox_cli("chat", str(pipeline / "results/sft/final"), "--seed", "3", stdin=turns)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("model> ") == 2


def test_chat_leaves_out_the_oldest_turns_when_the_window_is_full(pipeline):
    generator = Generator(pipeline / "results/sft/final", "cpu")
    sampling = SamplingConfig(max_new_tokens=8, temperature=0.0)
    turn = "Explain what this helper does with the list it is given, step by step."
    history = [{"role": "system", "content": "Be brief."}]
    for _ in range(8):
        history += [{"role": "user", "content": turn}, {"role": "assistant", "content": turn}]
    history.append({"role": "user", "content": "And now?"})
    window = TINY["model"]["max_position_embeddings"]
    assert len(generator.chat.prompt(history)) > window
    assert isinstance(generator.reply(history, sampling), str)
    with pytest.raises(ValueError, match="the model sees at most 128"):
        generator.reply([{"role": "user", "content": turn * 20}], sampling)


def test_eval_reproduces_the_training_evaluation(pipeline, tmp_path):
    results = pipeline / "results"
    pretrain = TINY["pretrain"]
    result = helox_cli(
        "eval",
        str(results / "pretrain/final"),
        "--shards",
        str(results / "shards"),
        "--batch-size",
        str(pretrain["batch_size"]),
        "--max-batches",
        str(pretrain["eval_batches"]),
    )
    assert result.returncode == 0, result.stderr
    scored = json.loads(result.stdout)
    trained = json.loads((results / "pretrain/final/metrics.json").read_text())
    assert scored["seq_len"] == pretrain["seq_len"] and scored["split"] == "val"
    for key in ("loss", "perplexity", "bpb"):
        assert scored[key] == pytest.approx(trained[f"val_{key}"], rel=1e-6)
    manifest = json.loads((results / "shards/manifest.json").read_text())
    foreign = tmp_path / "foreign-shards"
    foreign.mkdir()
    manifest["tokenizer_sha256"] = "0" * 64
    (foreign / "manifest.json").write_text(json.dumps(manifest))
    refused = helox_cli("eval", str(results / "pretrain/final"), "--shards", str(foreign))
    assert refused.returncode == 2 and "another tokenizer" in refused.stderr


def test_sft_folder_loads_in_transformers_with_the_same_logits(pipeline):
    from transformers import AutoTokenizer, LlamaForCausalLM

    folder = pipeline / "results/sft/final"
    model, _ = load_final(folder)
    hf_model = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Sort a list of numbers."}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(hf_model(ids).logits, model(ids).logits, atol=1e-4, rtol=0)


def test_mlflow_store_holds_both_training_runs(pipeline):
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{pipeline / 'results' / 'mlflow.db'}")
    runs = [
        run
        for exp in client.search_experiments()
        for run in client.search_runs([exp.experiment_id])
    ]
    names = {run.info.run_name for run in runs}
    assert {"pretrain", "sft"} <= names
    pretrain = next(run for run in runs if run.info.run_name == "pretrain")
    assert "val/loss" in pretrain.data.metrics
    assert pretrain.data.params["training.learning_rate"] == str(1e-2)


def test_nothing_reruns_without_a_change(pipeline):
    assert planned_jobs(snakemake(pipeline, "-n", "results/sft/final")) == {}


@pytest.mark.parametrize("edit", [{"learning_rate": 5e-4}, {"lora": {"rank": 4}}])
def test_sft_edit_reruns_only_sft(pipeline, edit):
    jobs = planned_jobs(snakemake(pipeline, "-n", "results/sft/final", overlay={"sft": edit}))
    assert jobs == {"sft": 1}


def test_tokenizer_edit_reruns_from_the_tokenizer_down(pipeline):
    jobs = planned_jobs(
        snakemake(pipeline, "-n", "results/sft/final", overlay={"tokenizer": {"vocab_size": 900}})
    )
    assert jobs == {"tokenizer": 1, "shards": 2, "manifest": 1, "pretrain": 1, "sft": 1}


def test_dedup_threshold_edit_reclusters_without_resigning(pipeline):
    jobs = planned_jobs(
        snakemake(
            pipeline, "-n", "results/sft/final", overlay={"dedup": {"near": {"threshold": 0.9}}}
        )
    )
    downstream = {"tokenizer": 1, "shards": 2, "manifest": 1, "pretrain": 1, "sft": 1}
    assert jobs == {"dedup_buckets": 2, "dedup_clusters": 1, "dedup": 2, **downstream}


def test_bad_config_value_names_the_key_before_any_job(tmp_path):
    result = snakemake(
        tmp_path, "results/sft/final", overlay={"tokenizer": {"model_type": "wordpiece"}}
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "tokenizer.model_type" in output and "'unigram'" in output
    assert not (tmp_path / "results").exists()


def test_unknown_config_key_is_refused(tmp_path):
    result = snakemake(tmp_path, "-n", overlay={"pretrain": {"learning_rte": 1e-3}})
    assert result.returncode != 0
    assert "pretrain.learning_rte" in result.stdout + result.stderr
