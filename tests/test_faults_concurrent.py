"""Concurrent runs: a second `snakemake` in the same folder is refused by Snakemake's lock
while the first runs, and the first completes unharmed."""

from __future__ import annotations

import copy
import signal
import subprocess
import time
from pathlib import Path

import yaml
from conftest import stdlib_sources
from test_workflow import REPO, TINY, snakemake, snakemake_command

from helox.common.config_files import section_from_dict
from helox.data.clean import clean_part
from helox.data.clean_config import CleanConfig

PARTS = 2
TARGETS = [f"results/clean/part-{part}.jsonl.zst" for part in range(PARTS)]


def wait_for_lock(workdir: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    """Wait until `process` holds the working directory's lock."""
    locks = workdir / ".snakemake" / "locks"
    deadline = time.monotonic() + timeout
    while not (locks.is_dir() and any(locks.iterdir())):
        assert process.poll() is None, f"the first run ended ({process.returncode}) unlocked"
        assert time.monotonic() < deadline, f"no lock in {locks} after {timeout} s"
        time.sleep(0.02)


def test_a_second_run_in_the_same_folder_is_refused_and_the_first_completes(
    tmp_path: Path,
) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    for name, text in stdlib_sources(12):
        (raw / name).write_text(text)
    overlay = {"corpus": {"raw_dir": str(raw)}, "clean": {"parts": PARTS}}
    command = snakemake_command(tmp_path, *TARGETS, overlay=overlay)
    log = (tmp_path / "first.log").open("w")
    first = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_lock(tmp_path, first)
        # Paused while it holds the lock, the first run is surely still running when the
        # second starts, however fast the machine.
        first.send_signal(signal.SIGSTOP)
        second = snakemake(tmp_path, *TARGETS, overlay=overlay)
        first.send_signal(signal.SIGCONT)
        assert first.wait(timeout=300) == 0, (tmp_path / "first.log").read_text()[-3000:]
    finally:
        first.kill()
        log.close()

    assert second.returncode != 0
    assert "Directory cannot be locked" in second.stdout + second.stderr
    for leftover in ("locks", "incomplete"):  # released, and no output marked incomplete
        assert not any((tmp_path / ".snakemake" / leftover).glob("**/*")), leftover
    shipped = yaml.safe_load((REPO / "config.yaml").read_text())["clean"]
    config = section_from_dict(CleanConfig, {**copy.deepcopy(shipped), **TINY["clean"]}, "clean")
    for part in range(PARTS):
        expected = tmp_path / "expected" / f"part-{part}.jsonl.zst"
        rejected = tmp_path / "expected" / f"rejected-{part}.jsonl.zst"
        stats = tmp_path / "expected" / f"part-{part}.stats.json"
        clean_part(raw, part, PARTS, config, expected, rejected, stats)
        assert (tmp_path / TARGETS[part]).read_bytes() == expected.read_bytes()
