"""The pretrain rule killed with SIGKILL mid-run, then the same Snakemake target run again."""

from __future__ import annotations

import copy
import signal
import subprocess
from pathlib import Path

import yaml
from test_distributed import kill_tree, wait_for
from test_workflow import REPO, TINY, snakemake, snakemake_command

from helox.common.config_files import merge_into
from helox.common.io import read_json
from helox.model.config import ModelConfig
from helox.pipeline.config import resolve_config
from helox.tokens.shards import ShardsConfig, build_dataset_shards
from helox.tokens.tokenizer import TokenizerConfig, train_tokenizer
from helox.train.config import TrainingConfig
from helox.train.pretrain import run_pretrain
from helox.train.tracking import TrackingConfig

TARGET = "results/pretrain/final"
# Upstream outputs are made here directly; the DAG is limited to the rule under test, which
# trains in one thread as the uninterrupted run below does.
ONLY_PRETRAIN = ("--allowed-rules", "pretrain", "--set-threads", "pretrain=1")
OVERLAY = {
    "pretrain": {
        "seq_len": 32,
        "batch_size": 8,
        "total_steps": 40,
        "eval_steps": 20,
        "save_steps": 5,
        "log_steps": 5,
    },
    "tracking": {"enabled": False},
}


def prepare_inputs(workdir: Path, doc_parts: list[Path]) -> None:
    """The tokenizer and shards the pretrain rule reads, as the upstream rules write them."""
    results = workdir / "results"
    tokenizer = train_tokenizer(
        doc_parts,
        results / "tokenizer" / "files" / "tokenizer.model",
        TokenizerConfig(vocab_size=400, max_train_bytes=200_000),
        threads=1,
    )
    shards = ShardsConfig(parts=2, train_split=0.8, val_split=0.1, test_split=0.1)
    build_dataset_shards(doc_parts, tokenizer, results / "shards", shards, seed=1337)


def effective_config() -> dict:
    """config.yaml with the tiny workflow overlay and this module's on top, completed with the
    defaults as the rules see it."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for layer in (TINY, OVERLAY):
        merge_into(config, copy.deepcopy(layer))
    return resolve_config(config)


def start_snakemake(workdir: Path) -> subprocess.Popen:
    """`snakemake(workdir, TARGET, *ONLY_PRETRAIN, overlay=OVERLAY)`, started in the background."""
    command = snakemake_command(workdir, TARGET, *ONLY_PRETRAIN, overlay=OVERLAY)
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_sigkill_then_the_same_target_resumes_and_matches_an_uninterrupted_run_bit_for_bit(
    tmp_path: Path, doc_parts: list[Path]
) -> None:
    prepare_inputs(tmp_path, doc_parts)
    checkpoints = tmp_path / "results" / "pretrain" / "checkpoints"

    first = start_snakemake(tmp_path)
    wait_for(checkpoints / "step_5" / "COMPLETE", first)
    kill_tree(first)
    assert first.returncode == -signal.SIGKILL
    assert not (tmp_path / TARGET).exists()

    refused = snakemake(tmp_path, TARGET, *ONLY_PRETRAIN, overlay=OVERLAY)
    assert refused.returncode != 0 and "--unlock" in refused.stderr
    assert snakemake(tmp_path, "--unlock", overlay=OVERLAY).returncode == 0
    rerun = snakemake(tmp_path, TARGET, *ONLY_PRETRAIN, overlay=OVERLAY)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    log = (tmp_path / "logs" / "pretrain.log").read_text()
    resumed_at = int(log.split("resumed from ")[1].split(" at step ")[1].split()[0])
    assert 5 <= resumed_at < 40

    config = effective_config()
    uninterrupted = run_pretrain(
        tmp_path / "results" / "shards" / "manifest.json",
        tmp_path / "results" / "tokenizer" / "files",
        tmp_path / "uninterrupted" / "final",
        ModelConfig(**config["model"]),
        TrainingConfig(**config["pretrain"]),
        seed=config["seed"],
        tracking=TrackingConfig(enabled=False),
        threads=1,
    )
    resumed = read_json(tmp_path / TARGET / "metrics.json")
    assert len(resumed["loss_history"]) == 40
    assert resumed["loss_history"] == uninterrupted["loss_history"]
    assert resumed["val_loss"] == uninterrupted["val_loss"]
    assert resumed["val_bpb"] == uninterrupted["val_bpb"]


def pretrain_job_line(result: subprocess.CompletedProcess, key: str) -> str:
    """The `key:` line of the pretrain job in a dry run's listing."""
    assert result.returncode == 0, result.stderr
    job = (result.stdout + result.stderr).split("rule pretrain:")[1]
    return next(line for line in job.splitlines() if line.strip().startswith(f"{key}:"))


def test_the_rule_asks_for_a_gpu_per_process_when_training_on_cuda(tmp_path: Path) -> None:
    on_cuda = snakemake(
        tmp_path, "-n", TARGET, overlay={"pretrain": {"device": "cuda", "nproc": 4}}
    )
    assert "gpu=4" in pretrain_job_line(on_cuda, "resources")
    assert pretrain_job_line(on_cuda, "threads").split() == ["threads:", "2"]
