"""The tiny workflow, through pretraining, submitted through workflow/profiles/slurm to a real
one-node Slurm cluster (tests/slurm/start_slurm.sh), checked against a local run of the same
workflow; and a training job that asks for two nodes, on a second cluster that presents two nodes
on this machine.

Skipped, with the reason printed, where Slurm cannot be installed and started: not root, or apt
cannot install Debian's packages.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest
import yaml
from process_runs import (
    assert_same_losses,
    one_process_pretraining,
    pretrain_job,
    short_pretraining,
)
from test_workflow import REPO, planned_jobs, snakemake

from helox.common.io import read_json
from helox.train.launch import scheduler_request

START_SLURM = Path(__file__).parent / "slurm" / "start_slurm.sh"
SLURM_PROFILE = REPO / "workflow" / "profiles" / "slurm" / "config.yaml"
# One line per finished job, written by slurmctld (JobCompLoc in start_slurm.sh).
JOB_LOG = Path("/var/log/slurm/jobcomp.log")
# The target: every data stage and a training stage, each its own Slurm job, on the cpu and the
# gpu partition. SFT and DPO are training jobs like pretrain (the profile's routing of every
# rule is tests/test_profiles.py's); each further stage would add a job's wait to the test.
TARGET = "results/pretrain/final"
# What the two runs must agree on byte for byte: every data stage, and the trained model folder
# apart from metrics.json, which also holds timings.
DATA_STAGES = ("sample", "clean", "dedup", "tokenizer", "shards")
MODEL_FOLDERS = ("pretrain/final",)
LEARNING_METRICS = ("steps", "train_tokens_seen", "train_loss", "val_loss", "loss_history")
# The tiny workflow with a few training steps, and no MLflow run to open (tests/test_workflow.py
# and tests/test_tracking.py check those).
SHORT_TRAINING = {
    "pretrain": {"total_steps": 6, "warmup_steps": 2, "eval_steps": 3, "save_steps": 3},
    "tracking": {"enabled": False},
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
    (which keeps finished jobs for MinJobAge = 600 s). The executor checks 10 s after a job
    finished and 10 s longer each time none did (10, 30, 60 s...): most jobs here take 15-30 s."""
    profile = yaml.safe_load(SLURM_PROFILE.read_text())
    for resources in profile["set-resources"].values():
        resources.update(gpu=0, mem_mb=4000)
    profile.update(
        {
            "slurm-no-account": True,
            "slurm-status-command": "squeue",
            "slurm-init-seconds-before-status-checks": 10,
        }
    )
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(profile))
    return folder


def skip(what: str, reason: str) -> NoReturn:
    """Skip `what`, with a warning, so that the reason shows in pytest's summary without -rs."""
    warnings.warn(f"{what} skipped: {reason}", stacklevel=2)
    pytest.skip(reason)


def start_slurm(what: str, *args: str) -> subprocess.CompletedProcess:
    """tests/slurm/start_slurm.sh run with `args`; `what` is skipped where the script cannot
    install and start Slurm: not root, or its exit status 3."""
    if os.geteuid() != 0:
        skip(what, "installing and starting Slurm needs root")
    started = subprocess.run(
        ["bash", str(START_SLURM), *args], capture_output=True, text=True, timeout=900
    )
    if started.returncode == 3:
        skip(what, started.stderr.strip())
    assert started.returncode == 0, started.stdout + started.stderr
    return started


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
    started = start_slurm("Slurm tests", "up", *partitions(profile))
    daemons = started.stdout.splitlines()[-1].removeprefix("started:").split()
    yield profile
    subprocess.run(["bash", str(START_SLURM), "down", *daemons], check=True, timeout=120)


@pytest.fixture(scope="module")
def runs(slurm_cluster, tmp_path_factory) -> dict[str, Run]:
    """The Slurm run and the local run, side by side: the Slurm one mostly waits on the queue."""
    profile = one_node_profile(tmp_path_factory.mktemp("profile") / "slurm")
    extra_args = {"slurm": ["--workflow-profile", str(profile)], "local": []}
    workdirs = {name: tmp_path_factory.mktemp(name) for name in extra_args}

    def run(name: str) -> Run:
        args = (TARGET, *extra_args[name])
        return Run(workdirs[name], snakemake(workdirs[name], *args, overlay=SHORT_TRAINING))

    with ThreadPoolExecutor(len(extra_args)) as pool:
        runs = dict(zip(extra_args, pool.map(run, extra_args), strict=True))
    for name, finished in runs.items():
        assert finished.result.returncode == 0, f"{name} run:\n{finished.output[-8000:]}"
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


# ---------------------------------------------------------------------------- two nodes


def loopback_names() -> list[str]:
    """Names of this machine other than localhost, from /etc/hosts' loopback lines."""
    names: list[str] = []
    for line in Path("/etc/hosts").read_text().splitlines():
        fields = line.split("#")[0].split()
        if fields and fields[0].startswith("127."):
            names += [name for name in fields[1:] if name != "localhost" and name not in names]
    return names


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    """The environment of a private two-node cluster on this machine (SLURM_CONF set)."""
    names = loopback_names()
    if len(names) < 2:
        reason = (
            f"two nodes need two names of this machine in /etc/hosts besides localhost: {names}"
        )
        skip("two-node Slurm test", reason)
    folder = tmp_path_factory.mktemp("two_nodes")
    started = start_slurm("two-node Slurm test", "two-nodes", str(folder), *names[:2])
    yield {**os.environ, "SLURM_CONF": str(folder / "slurm.conf")}
    subprocess.run(["bash", str(START_SLURM), "stop-two", str(folder)], check=True, timeout=120)
    if "munged" in started.stdout.splitlines()[-1]:
        subprocess.run(["bash", str(START_SLURM), "down", "munged"], check=True, timeout=120)


def test_a_two_node_training_job_runs_one_torchrun_per_node(
    two_nodes, manifest: Path, spm_model: Path, tmp_path: Path
) -> None:
    """A job asking for the nodes and tasks that `pretrain.nodes: 2` derives, its Snakemake
    step played by a one-task `srun` as the Slurm executor starts it: the launcher finds the
    first node in the job's node list, starts a torchrun on each node, and they train as one
    process with the same global batch would."""
    config = short_pretraining(
        8, eval_batches=20, save_steps=4, log_steps=8, nodes=2, rendezvous_timeout=60
    )
    single = one_process_pretraining(manifest, spm_model, tmp_path / "single" / "final", config)
    output = tmp_path / "two" / "final"
    job = pretrain_job(manifest, spm_model, output, config)
    (tmp_path / "job.json").write_text(job.to_json())
    log = tmp_path / "pretrain.log"
    launch = (
        "import sys; from helox.common.logs import setup_logging; "
        "from helox.train.pretrain import PretrainJob, launch_pretrain; "
        "setup_logging(sys.argv[2]); "
        "launch_pretrain(PretrainJob.from_json(open(sys.argv[1]).read()), sys.argv[2])"
    )
    (tmp_path / "job.sh").write_text(
        "#!/bin/bash\n"
        f"srun -n1 --cpus-per-task=1 --nodes=2 {sys.executable} -c '{launch}' job.json {log}\n"
    )
    request = scheduler_request(dataclasses.asdict(config))
    submitted = subprocess.run(
        [
            "sbatch",
            "--wait",
            "--parsable",
            f"--nodes={request['nodes']}",
            f"--ntasks={request['tasks']}",
            "--cpus-per-task=1",
            "--export=ALL",
            f"--output={tmp_path / 'slurm.out'}",
            f"-D{tmp_path}",
            str(tmp_path / "job.sh"),
        ],
        env=two_nodes,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output_text = (tmp_path / "slurm.out").read_text() if (tmp_path / "slurm.out").exists() else ""
    assert submitted.returncode == 0, submitted.stderr + output_text[-4000:]
    job_id = submitted.stdout.strip().split(";")[0]
    first, second = loopback_names()[:2]
    text = log.read_text()
    assert f"2 nodes meeting at {first}:" in text and f"helox-pretrain-{job_id}" in text, text
    assert "'world_size': 2" in text

    assert_same_losses(read_json(output / "metrics.json"), single)
