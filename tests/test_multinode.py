"""Several nodes: two torchrun launches on loopback play two nodes (gloo, c10d rendezvous at
127.0.0.1), the rendezvous is found from Slurm's node list, and a dry run shows the job's
node, task and GPU requests."""

from __future__ import annotations

import dataclasses
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from process_runs import (
    assert_follows,
    one_process_pretraining,
    pretrain_job,
    resumed_step,
    short_pretraining,
)
from test_distributed import kill_tree, wait_for
from test_train import TRAINING
from test_workflow import snakemake

from helox.common.io import read_json
from helox.train.launch import (
    LaunchError,
    Rendezvous,
    launch_processes,
    scheduler_request,
    slurm_rendezvous,
    srun_command,
    torchrun_command,
)
from helox.train.pretrain import PretrainJob

NODES = 2
STEPS = 12
JOIN_TIMEOUT = 8  # seconds; long enough for two torch imports on 2 busy cores


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def loopback_rendezvous() -> Rendezvous:
    """A fresh rendezvous on this machine, as a new Slurm job would have its own."""
    return Rendezvous(
        nodes=NODES,
        host="127.0.0.1",
        port=free_port(),
        run_id=f"test-{uuid.uuid4().hex[:8]}",
        join_timeout=JOIN_TIMEOUT,
    )


def start_node(job: PretrainJob, rendezvous: Rendezvous, log: Path) -> subprocess.Popen:
    """One "node": a torchrun with one process, joining `rendezvous`."""
    command = torchrun_command(1, "helox.train.pretrain", [job.to_json(), str(log)], rendezvous)
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(node: subprocess.Popen, timeout: float) -> tuple[int, str, float]:
    """(exit status, stderr, seconds waited) of `node`; past `timeout` it is killed and the
    test fails."""
    started = time.monotonic()
    try:
        _, stderr = node.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(node)
        pytest.fail(f"a node still ran {timeout} s later")
    return node.returncode, stderr, time.monotonic() - started


@pytest.fixture
def per_node():
    return short_pretraining(
        STEPS,
        eval_batches=20,  # the whole val split, at either batch size
        save_steps=3,
        log_steps=STEPS,
        nodes=NODES,
        rendezvous_timeout=JOIN_TIMEOUT,
    )


def test_two_nodes_match_one_process_a_killed_node_fails_the_job_and_the_rerun_resumes(
    manifest: Path, spm_model: Path, per_node, tmp_path: Path
) -> None:
    single = one_process_pretraining(manifest, spm_model, tmp_path / "single" / "final", per_node)

    output = tmp_path / "two" / "final"
    job = pretrain_job(manifest, spm_model, output, per_node)
    log = tmp_path / "rank0.log"
    rendezvous = loopback_rendezvous()
    survivor, lost = (start_node(job, rendezvous, log) for _ in range(NODES))
    wait_for(output.parent / "checkpoints" / "step_3" / "COMPLETE", survivor, timeout=120)
    kill_tree(lost)
    status, stderr, waited = finish(survivor, timeout=60)
    assert status != 0, stderr[-3000:]
    assert not output.exists()

    rerun = loopback_rendezvous()
    nodes = [start_node(job, rerun, log) for _ in range(NODES)]
    for node in nodes:
        status, stderr, _ = finish(node, timeout=180)
        assert status == 0, stderr[-3000:]
    text = log.read_text()
    assert 3 <= resumed_step(text) < STEPS and "'world_size': 2" in text
    assert_follows(read_json(output / "metrics.json"), single, STEPS)
    print(f"the surviving node exited {waited:.1f} s after the other was killed")


def test_a_node_that_never_joins_fails_within_the_rendezvous_timeout(
    manifest: Path, spm_model: Path, per_node, tmp_path: Path
) -> None:
    job = pretrain_job(manifest, spm_model, tmp_path / "final", per_node)
    alone = start_node(job, loopback_rendezvous(), tmp_path / "rank0.log")
    status, stderr, waited = finish(alone, timeout=JOIN_TIMEOUT + 60)
    assert status != 0
    assert "RendezvousTimeoutError" in stderr, stderr[-3000:]
    assert waited >= JOIN_TIMEOUT - 1
    assert not (tmp_path / "final").exists()


@pytest.mark.skipif(shutil.which("scontrol") is None, reason="needs Slurm's scontrol")
def test_the_rendezvous_is_the_first_node_of_the_slurm_allocation() -> None:
    config = dataclasses.replace(TRAINING, nodes=2, nproc=4, device="cuda")
    environ = {"SLURM_JOB_ID": "4242", "SLURM_JOB_NODELIST": "gpu[07-08]"}
    rendezvous = slurm_rendezvous("pretrain", config, environ)
    assert rendezvous == Rendezvous(2, "gpu07", 24242, "helox-pretrain-4242", 600)

    command = srun_command(2, 4, torchrun_command(4, "helox.train.pretrain", ["{}"], rendezvous))
    assert command[:7] == [
        "srun",
        "--overlap",
        "--nodes=2",
        "--ntasks=2",
        "--ntasks-per-node=1",
        "--kill-on-bad-exit=1",
        "--gpus-per-node=4",
    ]
    for option in (
        "--nnodes=2",
        "--nproc-per-node=4",
        "--rdzv-backend=c10d",
        "--rdzv-endpoint=gpu07:24242",
        "--rdzv-id=helox-pretrain-4242",
        "--rdzv-conf=join_timeout=600",
    ):
        assert option in command
    assert "--standalone" not in command

    with pytest.raises(LaunchError, match="holds 3 node"):
        slurm_rendezvous("pretrain", config, {**environ, "SLURM_JOB_NODELIST": "gpu[07-09]"})
    with pytest.raises(LaunchError, match="pretrain.nodes is 2.*SLURM_JOB_ID"):
        slurm_rendezvous("pretrain", config, {})


def test_the_scheduler_request_follows_the_training_config() -> None:
    assert scheduler_request({"nodes": 1, "nproc": 1, "device": "auto"}) == {
        "nodes": 1,
        "tasks": 1,
    }
    assert scheduler_request({"nodes": 1, "nproc": 4, "device": "cuda"}) == {
        "nodes": 1,
        "tasks": 1,
        "tasks_per_gpu": 0,
        "gpu": 4,
    }
    assert scheduler_request({"nodes": 2, "nproc": 4, "device": "cuda"}) == {
        "nodes": 2,
        "tasks": 2,
        "tasks_per_gpu": 0,
        "gres": "gpu:4",
    }


def test_a_dry_run_of_a_two_node_config_shows_the_jobs_requests(tmp_path: Path) -> None:
    overlay = {
        "pretrain": {"nodes": 2, "nproc": 4, "device": "cuda"},
        "sft": {"nodes": 2, "nproc": 1, "device": "cpu"},
    }
    result = snakemake(tmp_path, "-n", "results/sft/final", overlay=overlay)
    assert result.returncode == 0, result.stderr
    listing = result.stdout + result.stderr
    for rule, wanted in (
        ("pretrain", ("nodes=2", "tasks=2", "gres=gpu:4", "tasks_per_gpu=0")),
        ("sft", ("nodes=2", "tasks=2")),
    ):
        job = listing.split(f"rule {rule}:")[1]
        resources = next(line for line in job.splitlines() if "resources:" in line)
        for request in wanted:
            assert request in resources, (rule, resources)
        if rule == "sft":  # on the CPU: no GPU asked for
            assert "gpu" not in resources, resources


def test_the_launch_refuses_several_nodes_outside_slurm(per_node) -> None:
    with pytest.raises(LaunchError, match="pretrain.nodes is 2.*set pretrain.nodes to 1"):
        launch_processes("pretrain", "helox.train.pretrain", "{}", per_node, environ={})
