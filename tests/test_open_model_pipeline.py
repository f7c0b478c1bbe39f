"""A public model through the whole DAG: the default target from `pretrain.init_from` set to a
Qwen3-shaped folder with Qwen3's real tokenizer files, every final folder a Qwen3 again; and
which jobs each stage's `init_from` plans."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from test_workflow import planned_jobs, snakemake
from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen3Config

from helox.tokens.vocab import load_tokenizer

# Qwen3's shape at a size a CPU trains in seconds: per-head q/k norms, heads wider than
# hidden/heads, tied embeddings, and the real vocabulary (151,669 ids in 151,936 rows).
QWEN3 = Qwen3Config(
    vocab_size=151_936,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
    head_dim=32,
    max_position_embeddings=256,
    rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
    tie_word_embeddings=True,
    use_sliding_window=False,
)
# Small batches: every position's logits span the 151,936 rows.
STEPS = {"batch_size": 2, "total_steps": 4, "warmup_steps": 1, "eval_steps": 4, "save_steps": 4}
OVERLAY = {
    "corpus": {"stdlib_max_bytes": 300_000},
    "clean": {"parts": 1},
    "shards": {"parts": 1},
    "pretrain": {**STEPS, "seq_len": 64, "eval_batches": 2, "log_steps": 2},
    "sft": {**STEPS, "max_pairs": 40, "log_steps": 2},
    "dpo": {**STEPS, "max_pairs": 24, "log_steps": 2},
    "eval": {
        "batch_size": 2,
        "bpb_max_batches": 2,
        "humaneval": {"limit": 2, "max_new_tokens": 8},
        "next_line": {"examples": 8},
    },
}
FINAL_FOLDERS = ("pretrain", "sft", "dpo")


@pytest.fixture(scope="module")
def qwen3_folder(real_tokenizers: Path, tmp_path_factory) -> Path:
    """A random Qwen3-shaped checkpoint saved by transformers, with Qwen3's tokenizer files."""
    folder = tmp_path_factory.mktemp("open-model") / "qwen3"
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(QWEN3).save_pretrained(folder)
    for path in (real_tokenizers / "qwen3").iterdir():
        shutil.copyfile(path, folder / path.name)
    return folder


def test_the_default_target_continues_a_qwen3_and_every_folder_stays_one(
    qwen3_folder: Path, tmp_path: Path
) -> None:
    overlay = OVERLAY | {"pretrain": OVERLAY["pretrain"] | {"init_from": str(qwen3_folder)}}
    result = snakemake(tmp_path, overlay=overlay)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    results = tmp_path / "results"
    assert not (results / "tokenizer" / "model.model").exists()  # no tokenizer was trained
    source_tokenizer = AutoTokenizer.from_pretrained(qwen3_folder)
    text = "def add(a, b):\n    return a + b  # Qwen3 🙂"
    for stage in FINAL_FOLDERS:
        folder = results / stage / "final"
        config = json.loads((folder / "config.json").read_text())
        assert config["architectures"] == ["Qwen3ForCausalLM"], stage
        model = AutoModelForCausalLM.from_pretrained(folder)
        assert type(model).__name__ == "Qwen3ForCausalLM"
        tokenizer = AutoTokenizer.from_pretrained(folder)
        assert tokenizer(text)["input_ids"] == source_tokenizer(text)["input_ids"]
        assert tokenizer.chat_template == source_tokenizer.chat_template
        evaluation = json.loads((results / "eval" / f"{stage}.json").read_text())
        assert evaluation["bpb"]["test"]["bytes"] > 0 and evaluation["tasks"]["next_line"]
    manifest = json.loads((results / "shards" / "manifest.json").read_text())
    assert manifest["tokenizer_sha256"] == load_tokenizer(qwen3_folder).sha256
    assert (results / "report" / "eval" / "card.html").is_file()


def test_an_instruct_model_goes_straight_to_dpo(qwen3_folder: Path, tmp_path: Path) -> None:
    """`dpo.init_from`: the imported model is DPO's start and frozen reference; pretraining
    and SFT do not run, and the tuned folder is a Qwen3 again."""
    overlay = OVERLAY | {"dpo": OVERLAY["dpo"] | {"init_from": str(qwen3_folder)}}
    result = snakemake(tmp_path, overlay=overlay)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    results = tmp_path / "results"
    assert not (results / "pretrain").exists() and not (results / "sft").exists()
    imported = json.loads((results / "import" / "dpo" / "metrics.json").read_text())
    metrics = json.loads((results / "dpo" / "final" / "metrics.json").read_text())
    assert metrics["lineage"]["imported_sha256"] == imported["lineage"]["imported_sha256"]
    assert metrics["val_pairs"] > 0 and metrics["steps"] == STEPS["total_steps"]
    model = AutoModelForCausalLM.from_pretrained(results / "dpo" / "final")
    assert type(model).__name__ == "Qwen3ForCausalLM"
    assert json.loads((results / "eval" / "dpo.json").read_text())["stage"] == "dpo"


@pytest.mark.parametrize(
    ("stage", "trained", "skipped"),
    [
        ("pretrain", {"pretrain", "sft", "dpo"}, {"tokenizer"}),
        ("sft", {"sft", "dpo"}, {"tokenizer", "pretrain", "report_mixture"}),
        ("dpo", {"dpo"}, {"tokenizer", "pretrain", "sft", "report_mixture", "report_samples"}),
    ],
)
def test_each_stage_can_start_from_an_imported_folder(
    tmp_path: Path, stage: str, trained: set[str], skipped: set[str]
) -> None:
    (tmp_path / "hf").mkdir()
    overlay = {stage: {"init_from": str(tmp_path / "hf")}}
    jobs = planned_jobs(snakemake(tmp_path, "-n", overlay=overlay))
    assert jobs["import_hf"] == jobs["imported_tokenizer"] == 1
    assert {name for name in ("pretrain", "sft", "dpo") if name in jobs} == trained
    assert not skipped & set(jobs)
    assert jobs["evaluate"] == len(trained)
