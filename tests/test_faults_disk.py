"""Disk full: a stage whose output fills a small tmpfs stops with an error naming the path,
and the previous checkpoint and every earlier output stay intact, with no temporary left."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import stdlib_sources
from fault_stages import JOBS, MODEL, NO_TRACKING, PRETRAIN, SEED

from helox.data.clean import clean_part
from helox.data.clean_config import CleanConfig
from helox.train.checkpoint import checkpoint_problem
from helox.train.pretrain import run_pretrain

CLEAN = CleanConfig(parts=1)
UPSTREAM = list(JOBS)[: list(JOBS).index("manifest") + 1]  # every job before training


@contextlib.contextmanager
def small_disk(path: Path, size_kb: int) -> Iterator[Path]:
    """A tmpfs of `size_kb` KiB mounted at `path`; skipped, with a warning, where none can be."""
    path.mkdir(parents=True)
    command = ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path)]
    try:
        mounted = subprocess.run(command, capture_output=True, text=True)
        problem = mounted.stderr.strip() if mounted.returncode else ""
    except OSError as error:
        problem = str(error)
    if problem:
        reason = f"no full-disk test: cannot mount a tmpfs ({problem}); it needs root"
        warnings.warn(reason, stacklevel=2)
        pytest.skip(reason)
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def files_of(folder: Path) -> dict[str, bytes]:
    """Every file under `folder`, hidden ones included, by relative path."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def write_raw(folder: Path, sources: list[tuple[str, str]], noise_documents: int = 0) -> Path:
    """A raw folder of standard-library sources and, optionally, a JSONL of hex noise."""
    folder.mkdir(parents=True)
    for name, text in sources:
        (folder / name).write_text(text)
    with open(folder / "noise.jsonl", "w") as handle:
        for index in range(noise_documents):
            text = os.urandom(4096).hex()
            handle.write(json.dumps({"text": f"{index} {text}"}) + "\n")
    return folder


def clean_into(raw: Path, results: Path, name: str) -> None:
    clean_part(
        raw,
        0,
        1,
        CLEAN,
        results / f"{name}.jsonl.zst",
        results / f"rejected/{name}.jsonl.zst",
        results / f"{name}.stats.json",
    )


def test_a_full_disk_stops_the_clean_stage_naming_the_path(tmp_path: Path) -> None:
    sources = stdlib_sources(3)
    small = write_raw(tmp_path / "small", sources)
    large = write_raw(tmp_path / "large", sources, noise_documents=200)
    with small_disk(tmp_path / "disk", 512) as disk:
        results = disk / "results/clean"
        clean_into(small, results, "part-0")
        before = files_of(disk)

        with pytest.raises(OSError) as raised:
            clean_into(large, results, "part-1")

        assert raised.value.errno == errno.ENOSPC
        assert str(results / "rejected/part-1.jsonl.zst") in str(raised.value)
        assert files_of(disk) == before  # no part-1 output, no temporary, part 0 untouched
        assert not any(disk.rglob(".*"))


def test_a_full_disk_stops_training_and_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in UPSTREAM:
        JOBS[name].run()
    upstream = files_of(tmp_path / "results")
    # One step checkpoint of this model takes about 360 KiB: room for one, not two.
    with small_disk(tmp_path / "disk", 600) as disk:
        checkpoints = disk / "checkpoints"
        with pytest.raises(Exception) as raised:
            run_pretrain(
                "results/shards/manifest.json",
                "results/tokenizer/spm.model",
                disk / "final",
                MODEL,
                PRETRAIN,
                seed=SEED,
                tracking=NO_TRACKING,
                checkpoint_dir=checkpoints,
                threads=1,
            )
        message = "\n".join([str(raised.value), *getattr(raised.value, "__notes__", [])])
        assert "No space left on device" in message
        first, second = PRETRAIN.save_steps, 2 * PRETRAIN.save_steps
        assert f"while writing {checkpoints / f'step_{second}'}" in message

        assert checkpoint_problem(checkpoints / f"step_{first}") is None
        assert sorted(p.name for p in disk.iterdir()) == ["checkpoints"]  # and no final/
        assert sorted(p.name for p in checkpoints.iterdir()) == [f"step_{first}"]
    assert files_of(tmp_path / "results") == upstream


FILE_SIZE_LIMIT = """
import resource, signal, sys
from helox.data.clean_config import CleanConfig
from helox.data.clean import clean_part

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
raw, kept, rejected, stats = sys.argv[1:]
clean_part(raw, 0, 1, CleanConfig(parts=1), kept, rejected, stats)
"""


def test_a_file_size_limit_stops_the_clean_stage_naming_the_path(tmp_path: Path) -> None:
    """Without root too: the same promise under RLIMIT_FSIZE, whose writes fail with EFBIG."""
    sources = stdlib_sources(3)
    results = tmp_path / "results/clean"
    clean_into(write_raw(tmp_path / "small", sources), results, "part-0")
    before = files_of(results)
    large = write_raw(tmp_path / "large", sources, noise_documents=200)
    names = ("part-1.jsonl.zst", "rejected/part-1.jsonl.zst", "part-1.stats.json")
    outputs = [results / name for name in names]

    command = [sys.executable, "-c", FILE_SIZE_LIMIT, str(large), *map(str, outputs)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)

    assert result.returncode != 0
    error = result.stderr.strip().splitlines()[-1]
    assert error == f"OSError: [Errno {errno.EFBIG}] File too large: '{outputs[1]}'"
    assert files_of(results) == before
