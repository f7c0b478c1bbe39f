"""Two processes through torchrun on CPU (gloo), DDP then FSDP2, against one process."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from test_loader import write_shards
from test_train import MODEL, TRAINING, patterned_documents

from helox.config import TokenizerConfig, TrackingConfig
from helox.io import read_json
from helox.pretrain import PretrainJob, launch_pretrain, run_pretrain, torchrun_command
from helox.tokenizer import train_tokenizer

NPROC = 2
STEPS = 40


@pytest.fixture
def spm_model(doc_parts, tmp_path: Path) -> Path:
    config = TokenizerConfig(vocab_size=400, max_train_bytes=200_000, threads=1)
    return train_tokenizer(doc_parts, tmp_path / "spm.model", config)


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    splits = {"train": patterned_documents(200, 0), "val": patterned_documents(10, 1)}
    return write_shards(tmp_path / "shards", splits, files_per_split=2, vocab_size=16)


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, read from /proc (torchrun starts workers in new sessions)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, frontier = [], [pid]
    while frontier:
        below = children.get(frontier.pop(), [])
        found += below
        frontier += below
    return found


def kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL `process` and everything it started, as a lost machine would."""
    for pid in [process.pid, *descendants(process.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait()


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, f"exited with {process.returncode} before {path} appeared"
        assert time.monotonic() < deadline, f"{path} did not appear in {timeout} s"
        time.sleep(0.01)


def test_ddp_killed_then_resumed_under_fsdp_follows_the_single_process_loss_curve(
    manifest: Path, spm_model: Path, tmp_path: Path
) -> None:
    """Each rank reads its half of every global batch; a SIGKILL mid-run under DDP, then a
    rerun with `fsdp: true`, resumes from the newest checkpoint and still matches one process."""
    model = dataclasses.replace(MODEL, dropout=0.0)
    per_rank = dataclasses.replace(
        TRAINING,
        gradient_accumulation_steps=1,
        total_steps=STEPS,
        eval_steps=STEPS,
        eval_batches=10,
        save_steps=5,
        log_steps=10,
        nproc=NPROC,
    )
    single = run_pretrain(
        manifest,
        spm_model,
        tmp_path / "single" / "final",
        model,
        dataclasses.replace(per_rank, batch_size=NPROC * per_rank.batch_size, nproc=1),
        seed=5,
        tracking=TrackingConfig(enabled=False),
        threads=1,
    )

    output = tmp_path / "ddp" / "final"
    job = PretrainJob(
        str(manifest),
        str(spm_model),
        str(output),
        model,
        per_rank,
        seed=5,
        tracking=TrackingConfig(enabled=False),
        threads=NPROC,
    )
    command = torchrun_command(NPROC, "helox.pretrain", [job.to_json()])
    killed = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    wait_for(output.parent / "checkpoints" / "step_5" / "COMPLETE", killed)
    kill_tree(killed)
    assert killed.returncode == -signal.SIGKILL
    assert not output.exists()

    log_path = tmp_path / "ddp.log"
    sharded = dataclasses.replace(job, training_config=dataclasses.replace(per_rank, fsdp=True))
    resumed = launch_pretrain(sharded, log_path=log_path)
    log = log_path.read_text()
    resumed_at = int(log.split("resumed from ")[1].split(" at step ")[1].split()[0])
    assert 5 <= resumed_at < STEPS and "world_size': 2" in log
    assert read_json(output / "metrics.json") == resumed

    steps = [step for step, _ in resumed["loss_history"]]
    assert steps == list(range(1, STEPS + 1))
    for (step, ours), (_, theirs) in zip(
        resumed["loss_history"], single["loss_history"], strict=True
    ):
        assert ours == pytest.approx(theirs, rel=1e-5), f"step {step}"
    assert resumed["val_loss"] == pytest.approx(single["val_loss"], rel=1e-5)
    assert resumed["train_tokens_seen"] == single["train_tokens_seen"]
