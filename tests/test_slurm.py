"""The tiny workflow submitted through workflow/profiles/slurm to a real one-node Slurm cluster
(tests/slurm/start_slurm.sh), checked against a local run of the same workflow.

Skipped, with the reason printed, where Slurm cannot be installed and started: not root, or apt
cannot install Debian's packages.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from test_workflow import REPO, planned_jobs, snakemake

START_SLURM = Path(__file__).parent / "slurm" / "start_slurm.sh"
SLURM_PROFILE = REPO / "workflow" / "profiles" / "slurm" / "config.yaml"
# One line per finished job, written by slurmctld (JobCompLoc in start_slurm.sh).
JOB_LOG = Path("/var/log/slurm/jobcomp.log")
# What the two runs must agree on byte for byte: every data stage, and the trained model folders
# apart from metrics.json, which also holds timings.
DATA_STAGES = ("sample", "clean", "dedup", "tokenizer", "shards")
MODEL_FOLDERS = ("pretrain/final", "sft/final")
LEARNING_METRICS = ("steps", "train_tokens_seen", "train_loss", "val_loss", "loss_history")
# The tiny workflow with a few training steps instead of its 150 + 12: every stage still runs as
# its own job, and the two runs together stay within a few minutes on 2 cores.
SHORT_TRAINING = {
    stage: {"total_steps": 6, "warmup_steps": 2, "eval_steps": 3, "save_steps": 3}
    for stage in ("pretrain", "sft")
}


@dataclass
class Run:
    workdir: Path
    result: subprocess.CompletedProcess

    @property
    def output(self) -> str:
        return self.result.stdout + self.result.stderr


def partitions(profile: dict) -> list[str]:
    """The partitions `profile` submits to, its default one first."""
    default = profile["default-resources"]["slurm_partition"]
    named = {r.get("slurm_partition", default) for r in profile["set-resources"].values()}
    return [default, *sorted(named - {default})]


def one_node_profile(folder: Path) -> Path:
    """The slurm profile as the test cluster can run it: no GPUs and a few GB of memory on its one
    node, and no accounting database, so no account to charge and job states read from squeue
    (which keeps finished jobs for MinJobAge = 600 s, over 3 x the first status check's 2 s)."""
    profile = yaml.safe_load(SLURM_PROFILE.read_text())
    for resources in profile["set-resources"].values():
        resources.update(gpu=0, mem_mb=4000)
    profile.update(
        {
            "slurm-no-account": True,
            "slurm-status-command": "squeue",
            "slurm-init-seconds-before-status-checks": 2,
        }
    )
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(profile))
    return folder


def finished_jobs() -> dict[str, dict[str, str]]:
    """The cluster's job log, as {job id: {field: value}}."""
    jobs = {}
    for line in JOB_LOG.read_text().splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        jobs[fields["JobId"]] = fields
    return jobs


@pytest.fixture(scope="session")
def slurm_cluster():
    profile = yaml.safe_load(SLURM_PROFILE.read_text())
    if os.geteuid() != 0:
        reason = "installing and starting Slurm needs root"
    else:
        started = subprocess.run(
            ["bash", str(START_SLURM), "up", *partitions(profile)],
            capture_output=True,
            text=True,
            timeout=900,
        )
        reason = started.stderr.strip() if started.returncode == 3 else None
    if reason:
        # A warning, so that the reason shows in pytest's summary without -rs.
        warnings.warn(f"Slurm tests skipped: {reason}", stacklevel=1)
        pytest.skip(reason)
    assert started.returncode == 0, started.stdout + started.stderr
    daemons = started.stdout.splitlines()[-1].removeprefix("started:").split()
    yield profile
    subprocess.run(["bash", str(START_SLURM), "down", *daemons], check=True, timeout=120)


@pytest.fixture(scope="module")
def runs(slurm_cluster, tmp_path_factory) -> dict[str, Run]:
    profile = one_node_profile(tmp_path_factory.mktemp("profile") / "slurm")
    runs = {}
    for name, extra in (("slurm", ["--workflow-profile", str(profile)]), ("local", [])):
        workdir = tmp_path_factory.mktemp(name)
        result = snakemake(workdir, "results/sft/final", *extra, overlay=SHORT_TRAINING)
        runs[name] = Run(workdir, result)
        assert runs[name].result.returncode == 0, f"{name} run:\n{runs[name].output[-8000:]}"
    return runs


def test_every_job_went_through_sbatch_to_its_partition(runs, slurm_cluster):
    slurm = runs["slurm"]
    # "Job 3 has been submitted with SLURM jobid 12 (log: .../slurm_logs/rule_shards/0/12.log)."
    submission = r"submitted with SLURM jobid (\d+) \(log: .*/slurm_logs/rule_(\w+)/"
    submitted = dict(re.findall(submission, slurm.output))
    planned = planned_jobs(slurm.result)
    assert sorted(submitted.values()) == sorted(
        rule for rule, count in planned.items() for _ in range(count)
    )
    finished = finished_jobs()
    default = slurm_cluster["default-resources"]["slurm_partition"]
    for job_id, rule in submitted.items():
        job = finished.get(job_id, {})
        assert job.get("JobState") == "COMPLETED", (rule, job_id, job)
        assert Path(job["WorkDir"]) == slurm.workdir, (rule, job)
        wanted = slurm_cluster["set-resources"].get(rule, {}).get("slurm_partition", default)
        assert job["Partition"] == wanted, (rule, job)


def test_every_job_left_its_log_and_measured_runtime(runs):
    slurm = runs["slurm"]
    logs = re.findall(r"^ +log: (\S+)$", slurm.output, flags=re.MULTILINE)
    benchmarks = re.findall(r"^ +benchmark: (\S+)$", slurm.output, flags=re.MULTILINE)
    jobs = sum(planned_jobs(slurm.result).values())
    assert len(set(logs)) == len(set(benchmarks)) == jobs
    for log in logs:
        assert (slurm.workdir / log).is_file(), log
    for benchmark in benchmarks:
        header, measured = (slurm.workdir / benchmark).read_text().splitlines()[:2]
        assert header.startswith("s\t") and float(measured.split("\t")[0]) > 0, benchmark


def test_outputs_match_a_local_run(runs):
    slurm, local = (runs[name].workdir / "results" for name in ("slurm", "local"))
    compared = 0
    for folder in (*DATA_STAGES, *MODEL_FOLDERS):
        for path in sorted((local / folder).rglob("*")):
            if path.is_dir() or path.name == "metrics.json":
                continue
            relative = path.relative_to(local)
            assert (slurm / relative).read_bytes() == path.read_bytes(), relative
            compared += 1
    assert compared > 20
    for folder in MODEL_FOLDERS:
        slurm_metrics, local_metrics = (
            json.loads((root / folder / "metrics.json").read_text()) for root in (slurm, local)
        )
        for key in LEARNING_METRICS:
            assert slurm_metrics[key] == local_metrics[key], (folder, key)
