"""Kill anywhere: a job SIGKILLed at a seeded moment leaves no half-written output, and run
again it writes exactly what an uninterrupted run writes.

Data, tokenizer and shards must match byte for byte; training must match bit for bit in its
losses and its weights, having resumed from the newest step checkpoint the kill left.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from fault_stages import JOBS, Job, run_counted

from helox.train.checkpoint import checkpoint_problem
from helox.train.step_folders import step_dirs

RUNNER = Path(__file__).with_name("fault_stages.py")
# (job, seed): every stage at least once, some twice. A seed picks the fraction of the
# job's events after which it is killed.
KILLS = [
    ("sample_corpus", 1),
    ("sample_instructions", 1),
    ("clean_0", 4),
    ("clean_1", 2),
    ("dedup_signatures_0", 1),
    ("dedup_buckets_1", 1),
    ("dedup_clusters", 1),
    ("dedup_0", 1),
    ("dedup_1", 3),
    ("tokenizer", 3),
    ("tokenizer", 5),
    ("shards_0", 1),
    ("manifest", 1),
    ("pretrain", 4),
    ("pretrain", 7),
    ("sft", 2),
]
# Kills late enough that a step checkpoint exists, so the run again must resume from it.
RESUMING = {("pretrain", 7), ("sft", 2)}
REPRODUCIBLE_METRICS = ("loss_history", "eval_history", "steps", "train_tokens_seen")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    """Every job run once, uninterrupted, in order; with each job's count of events."""
    root = tmp_path_factory.mktemp("reference")
    with contextlib.chdir(root):
        counts = {name: run_counted(job) for name, job in JOBS.items()}
    return root, counts


def reproducible_metrics(path: Path) -> dict:
    """The entries of a metrics.json that do not depend on the clock: losses and histories."""
    metrics = json.loads(path.read_text())
    return {
        key: value
        for key, value in metrics.items()
        if key.endswith(("loss", "bpb", "perplexity")) or key in REPRODUCIBLE_METRICS
    }


def snapshot(root: Path, output: str) -> dict[str, object]:
    """What a declared output must hold to equal another run's: the bytes of its files, but
    only the reproducible metrics of a final model folder."""
    path = root / output
    if path.is_file():
        return {output: path.read_bytes()}
    files = sorted(p for p in path.rglob("*") if p.is_file())
    found = {str(p.relative_to(root)): p.read_bytes() for p in files}
    if (path / "metrics.json").is_file():
        found[f"{output}/metrics.json"] = reproducible_metrics(path / "metrics.json")
    return found


def assert_same_as_reference(root: Path, reference_root: Path, output: str) -> None:
    found, expected = snapshot(root, output), snapshot(reference_root, output)
    assert sorted(found) == sorted(expected), output
    for name, value in expected.items():
        if isinstance(value, dict):
            differing = sorted(k for k in value if found[name].get(k) != value[k])
            assert not differing, f"{name}: {differing} differ"
        assert found[name] == value, f"{name} differs"


def assert_nothing_half_written(job: Job, root: Path, reference_root: Path) -> None:
    """Each declared output is absent or already whole; each step checkpoint is intact."""
    for output in job.outputs:
        if (root / output).exists():
            assert_same_as_reference(root, reference_root, output)
    if job.checkpoints:
        for step, path in step_dirs(root / job.checkpoints):
            assert checkpoint_problem(path) is None, f"step {step} is damaged"


@pytest.mark.parametrize(("job_name", "seed"), KILLS, ids=[f"{j}-seed{s}" for j, s in KILLS])
def test_a_job_killed_anywhere_and_run_again_matches_an_uninterrupted_run(
    job_name: str, seed: int, reference, tmp_path: Path, monkeypatch, caplog
) -> None:
    reference_root, counts = reference
    job = JOBS[job_name]
    root = tmp_path / "run"
    shutil.copytree(reference_root, root, symlinks=True)
    for name in filter(None, (*job.outputs, job.checkpoints)):
        path = root / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    kill_at = 1 + int(random.Random(f"{job_name}:{seed}").random() * counts[job_name])

    command = [sys.executable, str(RUNNER), str(root), job_name, str(kill_at)]
    killed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert_nothing_half_written(job, root, reference_root)
    left = step_dirs(root / job.checkpoints) if job.checkpoints else []
    assert bool(left) == ((job_name, seed) in RESUMING), f"checkpoints left: {left}"

    monkeypatch.chdir(root)
    with caplog.at_level(logging.INFO, logger="helox.train.loop"):
        job.run()
    for output in job.outputs:
        assert_same_as_reference(root, reference_root, output)
    if left:
        newest = left[-1][1]
        assert f"resumed from {newest.relative_to(root)}" in caplog.text
