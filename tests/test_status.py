"""`helox status`: which stages are up to date, which would rerun and why."""

from __future__ import annotations

import re
import subprocess
import sys

from test_workflow import snakemake_command

from helox.pipeline.status import stage_status

DATA_STAGES = {"sample_corpus", "clean", "dedup_signatures", "dedup_clusters", "dedup"}
DOWNSTREAM = {"shards", "manifest", "pretrain", "sft"}


def helox_status(workdir, *targets: str, overlay: dict | None = None) -> dict[str, str]:
    """{stage: its state line and reasons} from `helox status` with the tiny overlay."""
    snakemake_args = snakemake_command(workdir, *targets, overlay=overlay)[3:]
    command = [sys.executable, "-m", "helox.cli", "status", "--", *snakemake_args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    stages: dict[str, str] = {}
    for line in result.stdout.splitlines()[1:]:
        if match := re.match(r"^(\w+)\s+\d+\s+(.*)$", line):
            current = match[1]
            stages[current] = match[2]
        else:
            stages[current] += "\n" + line.strip()
    return stages


def test_status_after_a_run_says_every_stage_is_up_to_date(pipeline):
    stages = helox_status(pipeline, "results/sft/final")
    assert DATA_STAGES | {"tokenizer"} | DOWNSTREAM <= set(stages)
    assert all(state == "up to date" for state in stages.values()), stages


def test_status_after_a_config_edit_names_the_stages_to_rerun_and_why(pipeline):
    stages = helox_status(pipeline, "results/sft/final", overlay={"tokenizer": {"vocab_size": 900}})
    assert all(stages[stage] == "up to date" for stage in DATA_STAGES), stages
    assert stages["tokenizer"].startswith("would rerun")
    assert "because its config section changed (results/tokenizer/" in stages["tokenizer"]
    for stage in DOWNSTREAM:
        assert stages[stage].startswith("would rerun"), stage
    assert "because inputs are rebuilt by tokenizer" in stages["shards"]
    assert "because inputs are rebuilt by shards" in stages["manifest"]
    order = list(stages)
    assert order.index("clean") < order.index("tokenizer") < order.index("shards")
    assert order.index("shards") < order.index("pretrain") < order.index("sft")


def test_status_reads_missing_outputs_from_the_summary():
    row = {"input-file(s)": "-", "plan": "update pending"}
    rows = [
        {**row, "output_file": "a.txt", "rule": "first", "status": "missing"},
        {**row, "output_file": "b.txt", "rule": "second", "status": "ok"},
        {**row, "output_file": "c.txt", "rule": "third", "status": "ok", "plan": "no update"},
    ]
    rows[1]["input-file(s)"] = "a.txt,elsewhere.txt"
    stages = {stage.stage: stage for stage in stage_status(rows)}
    assert list(stages).index("first") < list(stages).index("second")
    assert stages["first"].reasons == {"output missing": "a.txt"}
    assert stages["second"].reasons == {"inputs are rebuilt by first": "b.txt"}
    assert stages["third"].up_to_date and stages["third"].outputs == 1
