"""The evaluate stage on the tiny pipeline's models: the JSON, the card, MLflow, the CLI."""

from __future__ import annotations

import json

import pytest
import yaml
from test_workflow import TINY, helox_cli

from helox.eval.card import card_table, comparable
from helox.eval.choice import run_choice_task
from helox.eval.stage import card_metrics

STAGES = ("pretrain", "sft", "dpo")


def test_every_stage_beats_the_unigram_model_on_held_out_bytes(evaluated):
    for stage, result in evaluated.items():
        for split in ("val", "test"):
            scored = result["bpb"][split]
            assert scored["split"] == split and scored["tokens"] > 0 and scored["bytes"] > 0
            assert 0 < scored["bpb"] < scored["unigram_bpb"], (stage, split)


def test_humaneval_attempts_every_problem_asked_for(evaluated):
    limit = TINY["eval"]["humaneval"]["limit"]
    for result in evaluated.values():
        humaneval = result["humaneval"]
        assert humaneval["attempted"] == limit
        assert 0.0 <= humaneval["pass@1"] <= 1.0
        assert humaneval["problems_passed"] == round(humaneval["pass@1"] * limit)


def test_next_line_task_reports_accuracy_beside_chance(pipeline, evaluated):
    """The stage's numbers are those of the scorer run on the task file it built (the tiny
    models score near chance; tests/test_choice.py checks the scorer itself)."""
    task_path = pipeline / "results/eval/tasks/next_line.jsonl"
    for stage, result in evaluated.items():
        task = result["tasks"]["next_line"]
        assert task["examples"] == TINY["eval"]["next_line"]["examples"]
        assert task["chance"] == pytest.approx(0.25)
        centered = (task["accuracy"] - task["chance"]) / (1 - task["chance"])
        assert task["centered_accuracy"] == pytest.approx(centered)
        direct = run_choice_task(pipeline / f"results/{stage}/final", task_path, 3, 1337, "cpu")
        assert direct["accuracy"] == task["accuracy"] and direct["chance"] == task["chance"]


def test_card_puts_each_metric_beside_its_baseline(evaluated):
    headers, rows = card_table([evaluated[stage] for stage in STAGES])
    assert headers == ["metric", "baseline", *STAGES]
    by_metric = {row[0]: row[1:] for row in rows}
    val = by_metric[comparable("val bits per byte (unigram baseline)")]
    assert val[0] == evaluated["pretrain"]["bpb"]["val"]["unigram_bpb"]
    assert val[1:] == [evaluated[stage]["bpb"]["val"]["bpb"] for stage in STAGES]
    assert by_metric["next_line accuracy (3-shot)"][0] == pytest.approx(0.25)
    assert by_metric[comparable("HumanEval pass@1")][1:] == [
        evaluated[s]["humaneval"]["pass@1"] for s in STAGES
    ]


def test_card_prints_from_the_stage_files(pipeline, evaluated):
    paths = [str(pipeline / f"results/eval/{stage}.json") for stage in STAGES]
    printed = helox_cli("eval", "--card", *paths)
    assert printed.returncode == 0, printed.stderr
    header, *lines = printed.stdout.splitlines()
    assert header.split() == ["metric", "baseline", *STAGES]
    assert any(line.startswith("HumanEval pass@1") for line in lines)


def test_card_numbers_are_logged_to_each_stage_run(pipeline, evaluated):
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{pipeline / 'results' / 'mlflow.db'}")
    runs = [
        run
        for experiment in client.search_experiments()
        for run in client.search_runs([experiment.experiment_id])
    ]
    for stage in STAGES:
        run = next(run for run in runs if run.info.run_name == stage)
        for key, value in card_metrics(evaluated[stage]).items():
            assert run.data.metrics[key] == pytest.approx(value), (stage, key)


def test_eval_suite_from_the_command_line(pipeline, tmp_path):
    config = tmp_path / "eval.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "eval": {
                    "humaneval": {"limit": 2, "max_new_tokens": 16},
                    "next_line": {"examples": 12},
                }
            }
        )
    )
    output = tmp_path / "pretrain.json"
    result = helox_cli(
        "eval",
        str(pipeline / "results/pretrain/final"),
        "--shards",
        str(pipeline / "results/shards"),
        "--suite",
        "--config",
        str(config),
        "--device",
        "cpu",
        "--output",
        str(output),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    written = json.loads(output.read_text())
    assert written["humaneval"]["attempted"] == 2
    assert written["tasks"]["next_line"]["examples"] == 12
    assert result.stdout.splitlines()[0].split() == ["metric", "baseline", "pretrain"]
