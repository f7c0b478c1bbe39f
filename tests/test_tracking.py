"""MLflow: training runs nested under a pipeline run, with params, metrics and lineage tags."""

from __future__ import annotations

import inspect
import subprocess
from pathlib import Path
from types import SimpleNamespace

import mlflow
from test_workflow import TINY

import helox
from helox.common.io import sha256_file
from helox.model.config import ModelConfig
from helox.train.config import TrainingConfig
from helox.train.lineage import git_commit, lineage_tags, stage_job_arguments
from helox.train.pretrain import PretrainJob
from helox.train.tracking import PARENT_TAG, PIPELINE_TAG, Tracker, TrackingConfig
from helox.tune.config import SFTConfig
from helox.tune.dpo import run_dpo
from helox.tune.sft import SFTJob

REPO = Path(__file__).resolve().parents[1]


def all_runs(uri: str) -> list:
    client = mlflow.MlflowClient(uri)
    return [
        run
        for experiment in client.search_experiments()
        for run in client.search_runs([experiment.experiment_id])
    ]


def test_training_runs_nest_under_one_pipeline_run_with_lineage(pipeline):
    results = pipeline / "results"
    uri = f"sqlite:///{results / 'mlflow.db'}"
    runs = all_runs(uri)
    parents = [run for run in runs if run.info.run_name == "pipeline"]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.data.tags[PIPELINE_TAG]
    assert parent.info.status == "FINISHED"
    children = {
        run.info.run_name: run
        for run in runs
        if run.data.tags.get(PARENT_TAG) == parent.info.run_id
    }
    assert set(children) == {"pretrain", "sft", "dpo"}

    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    for stage, run in children.items():
        tags = run.data.tags
        assert tags["helox.manifest_sha256"] == sha256_file(results / "shards/manifest.json")
        tokenizer = results / "tokenizer/files/tokenizer.model"
        assert tags["helox.tokenizer_sha256"] == sha256_file(tokenizer)
        assert tags["helox.git_commit"] == commit
        assert tags["helox.version"] == helox.__version__
        assert tags["helox.snakemake_job"] == stage
        assert tags["helox.final_dir"] == str((results / stage / "final").resolve())
        checkpoints = tags["helox.checkpoints"].split(",")
        assert checkpoints and all(Path(path).is_dir() for path in checkpoints)
        for metric in ("train/loss", "train/lr", "train/tokens_per_second", "val/loss", "val/bpb"):
            assert metric in run.data.metrics, f"{stage}: {metric}"
    assert children["pretrain"].data.params["training.learning_rate"] == str(1e-2)
    assert children["pretrain"].data.params["model.hidden_size"] == "64"
    assert children["sft"].data.params["sft.total_steps"] == "12"
    history = mlflow.MlflowClient(uri).get_metric_history(
        children["pretrain"].info.run_id, "train/loss"
    )
    pretrain = TINY["pretrain"]
    logged = range(pretrain["log_steps"], pretrain["total_steps"] + 1, pretrain["log_steps"])
    assert [m.step for m in history] == list(logged)


def test_runs_with_one_pipeline_key_share_one_parent(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = TrackingConfig(uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    for name, key in (("pretrain", "a"), ("sft", "a"), ("pretrain", "b")):
        with Tracker(config, name, {"seed": 1}, {"helox.version": "x"}, pipeline=key) as tracker:
            tracker.log_metrics({"train/loss": 1.0}, 1)
    runs = all_runs(config.uri)
    parents = {run.data.tags[PIPELINE_TAG]: run for run in runs if run.info.run_name == "pipeline"}
    assert set(parents) == {"a", "b"}
    nested = [run.data.tags.get(PARENT_TAG) for run in runs if run.info.run_name != "pipeline"]
    assert sorted(nested) == sorted([parents["a"].info.run_id] * 2 + [parents["b"].info.run_id])


def test_lineage_outside_a_git_checkout_says_unknown(tmp_path, monkeypatch):
    assert git_commit(tmp_path) == ("unknown", False)
    monkeypatch.setattr("helox.train.lineage.git_commit", lambda: ("unknown", False))
    tags = lineage_tags(None, "abc", None)
    assert tags["helox.git_commit"] == tags["helox.manifest_sha256"] == "unknown"
    assert tags["helox.snakemake_job"] == "none"


def test_a_stage_adapter_takes_seed_tracking_checkpoints_threads_and_job_name() -> None:
    job = SimpleNamespace(
        params=SimpleNamespace(seed=7, checkpoints="results/sft/checkpoints"),
        config={"tracking": {"enabled": False, "experiment": "x"}},
        threads=3,
        rule="evaluate",
        wildcards={"stage": "sft"},
    )
    arguments = stage_job_arguments(job)
    assert arguments == {
        "seed": 7,
        "tracking": TrackingConfig(enabled=False, experiment="x"),
        "checkpoint_dir": "results/sft/checkpoints",
        "threads": 3,
        "snakemake_job": "evaluate[stage=sft]",
    }
    SFTJob(pretrained_dir="p", data_path="d", output_dir="o", config=SFTConfig(), **arguments)
    PretrainJob("m", "t", "o", ModelConfig(), TrainingConfig(), init_dir=None, **arguments)
    assert set(arguments) <= set(inspect.signature(run_dpo).parameters)  # the DPO adapter's call
