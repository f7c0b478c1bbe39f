"""The data stages at scale: real text at one eighth and at full size, through Snakemake.

The corpus is what nobody here wrote: the Python sources, stubs and documents (.py .pyi .rst
.md .txt) inside the wheels of /opt/pypi/files (887 popular packages), then, if those are not
enough, this interpreter's site-packages, written out as files up to --gb (10^9 bytes). The
eighth is the files whose path hashes to one part of eight, and the full corpus's 16 largest
files (hard links, no copy): each clean and shards job holds one document at a time, so its
peak follows the largest document, whichever corpus holds it, and the two sizes then share it.

Each size runs `snakemake results/shards/manifest.json` in its own folder with an overlay
config (its raw folder, --parts clean parts, --bucket-jobs dedup bucket jobs, 4 shards parts,
a 16k vocabulary trained on a 50 MB sample, which both sizes exceed). While it runs, every
job's Python process is watched through /proc (its script, as Snakemake names it, says the
job's rule): its peak
resident set (VmHWM, the kernel's high-water mark, so a peak between two looks is not
missed), its CPU time and how long it ran. Per job kind it prints jobs, wall seconds and CPU
seconds summed over jobs, MB of raw corpus per CPU second (one core), the largest peak RSS of
any job, and the ratio of that peak at full size to the eighth's; for the dedup join, which
holds the documents that have a duplicate, also its MB per thousand such documents.

    .venv/bin/python benchmarks/data_scale.py [--gb 1.0] [--parts 8] [--bucket-jobs 4]
    .venv/bin/python benchmarks/data_scale.py --dry-run-parts 1024 --bucket-jobs 64

The second form times a dry run of the DAG at that many clean parts on a tiny corpus, and
counts its jobs: the cost of planning a run at a cluster's scale.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import threading
import time
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import yaml

from helox.common.io import read_json
from helox.data.corpus import part_of

REPO = Path(__file__).resolve().parents[1]
WHEELS = Path("/opt/pypi/files")
SUFFIXES = (".py", ".pyi", ".rst", ".md", ".txt")
TARGET = "results/shards/manifest.json"
# Snakemake runs a rule's script as .snakemake/scripts/tmp<random>.<script name>.py.
SCRIPT = re.compile(r"\.snakemake/scripts/(tmp\w+)\.(\w+)\.py")
TICKS = os.sysconf("SC_CLK_TCK")
PAGE_MB = 1e6
# The full corpus's largest files, put in the eighth too: a job holds one document at a time,
# so its peak follows the largest document (up to clean.max_text_length), which is not what
# this benchmark measures.
LARGEST = 16


def write_corpus(raw: Path, target_bytes: int) -> int:
    """Fill `raw` with text files from the wheels (then site-packages) up to `target_bytes`;
    reuse it when a previous run left one as large. Return its size in bytes."""
    done = raw / ".corpus.json"
    if done.is_file() and read_json(done)["bytes"] >= target_bytes:
        return read_json(done)["bytes"]
    shutil.rmtree(raw, ignore_errors=True)
    raw.mkdir(parents=True)
    size = 0
    for wheel in sorted(WHEELS.glob("*.whl")):
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.infolist():
                name = PurePosixPath(member.filename)
                if name.suffix not in SUFFIXES or ".." in name.parts or name.is_absolute():
                    continue
                path = raw / wheel.stem / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(archive.read(member))
                size += member.file_size
                if size >= target_bytes:
                    break
        if size >= target_bytes:
            break
    site = Path(sysconfig.get_paths()["purelib"])
    for source in sorted(site.rglob("*")) if size < target_bytes else []:
        if source.suffix in SUFFIXES and source.is_file() and size < target_bytes:
            path = raw / "site-packages" / source.relative_to(site)
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, path)
            size += path.stat().st_size
    done.write_text(json.dumps({"bytes": size}))
    return size


def eighth_of(raw: Path, eighth: Path) -> int:
    """Hard-link into `eighth` the files of `raw` whose path hashes to part 0 of 8, and its
    LARGEST files; return the bytes linked."""
    shutil.rmtree(eighth, ignore_errors=True)
    files = sorted(path for path in raw.rglob("*") if path.is_file())
    largest = set(sorted(files, key=lambda path: path.stat().st_size)[-LARGEST:])
    size = 0
    for path in files:
        relative = str(path.relative_to(raw))
        chosen = part_of(relative, 8) == 0 or path in largest
        if chosen and not relative.startswith("."):
            target = eighth / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, target)
            size += path.stat().st_size
    return size


@dataclass
class Job:
    """One job's process as /proc showed it: its rule, peak RSS, CPU time and lifetime."""

    kind: str
    peak_mb: float = 0.0
    cpu_s: float = 0.0
    first: float = field(default_factory=time.monotonic)
    last: float = 0.0


class JobWatcher(threading.Thread):
    """Look at every process started from `workdir` running a Snakemake script, every `tick` s."""

    def __init__(self, workdir: Path, tick: float = 0.1):
        super().__init__(daemon=True)
        self.workdir, self.tick = str(workdir.resolve()), tick
        self.jobs: dict[str, Job] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for pid in filter(str.isdigit, os.listdir("/proc")):
                self._look(pid)
            self.stop.wait(self.tick)

    def _look(self, pid: str) -> None:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            found = SCRIPT.search(command)
            if not found or os.readlink(f"/proc/{pid}/cwd") != self.workdir:
                return
            status = Path(f"/proc/{pid}/status").read_text()
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            return
        peak = re.search(r"VmHWM:\s+(\d+) kB", status)
        job = self.jobs.setdefault(found[1], Job(found[2]))
        job.peak_mb = max(job.peak_mb, int(peak[1]) * 1024 / PAGE_MB if peak else 0.0)
        job.cpu_s = max(job.cpu_s, (int(fields[11]) + int(fields[12])) / TICKS)
        job.last = time.monotonic()


def snakemake_command(workdir: Path, overlay: dict, *flags: str) -> list[str]:
    """Snakemake to TARGET in `workdir` with `overlay` as its config file, and `flags`."""
    (workdir / "overlay.yaml").write_text(yaml.safe_dump(overlay))
    command = [sys.executable, "-m", "snakemake", TARGET, *flags]
    command += ["--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir)]
    return command + ["--configfile", str(workdir / "overlay.yaml")]


def run_size(workdir: Path, raw: Path, args: argparse.Namespace) -> tuple[float, list[Job]]:
    """Run the data stages on `raw` in `workdir`; return the wall time and every job seen."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    overlay = {
        "corpus": {"raw_dir": str(raw)},
        "clean": {"parts": args.parts},
        "dedup": {"bucket_jobs": args.bucket_jobs},
        "tokenizer": {"vocab_size": 16000, "max_train_bytes": 50_000_000},
        "shards": {"parts": 4},
    }
    command = snakemake_command(workdir, overlay, "--cores", str(args.cores))
    watcher = JobWatcher(workdir)
    watcher.start()
    start = time.monotonic()
    with open(workdir / "snakemake.log", "w") as log:
        result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    wall = time.monotonic() - start
    watcher.stop.set()
    watcher.join()
    if result.returncode:
        raise RuntimeError(f"snakemake failed: see {workdir / 'snakemake.log'}")
    return wall, list(watcher.jobs.values())


def by_kind(jobs: list[Job]) -> dict[str, dict[str, float]]:
    """Per job kind: jobs, summed wall and CPU seconds, the largest peak RSS."""
    kinds: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for job in jobs:
        row = kinds[job.kind]
        row["jobs"] += 1
        row["wall_s"] += job.last - job.first
        row["cpu_s"] += job.cpu_s
        row["peak_mb"] = max(row["peak_mb"], job.peak_mb)
        row["first"] = min(row.get("first", job.first), job.first)
    return kinds


def scale_table(args: argparse.Namespace) -> None:
    work = Path(args.work)
    raw, eighth = work / "raw", work / "raw-eighth"
    sizes = {"full": write_corpus(raw, int(args.gb * 1e9)), "eighth": eighth_of(raw, eighth)}
    results, walls, linked = {}, {}, {}
    for label, folder in (("eighth", eighth), ("full", raw)):
        print(f"{label}: {sizes[label] / 1e6:.0f} MB of raw text, running ...", flush=True)
        walls[label], jobs = run_size(work / label, folder, args)
        results[label] = by_kind(jobs)
        stats = read_json(work / label / "results" / "dedup" / "stats.json")
        linked[label] = stats["clusters"]["documents"]
        print(
            f"  {walls[label]:.0f} s wall; {stats['documents_in']} documents into dedup, "
            f"{stats['documents_out']} kept, {linked[label]} in duplicate clusters",
            flush=True,
        )
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")
    print(
        "| job kind | jobs | wall s (eighth / full) | CPU s (eighth / full) "
        "| MB/s per core (full) | peak RSS MB (eighth / full) | ratio full/eighth |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    order = sorted(results["full"], key=lambda kind: results["full"][kind]["first"])
    for kind in order:
        small, large = results["eighth"].get(kind), results["full"][kind]
        rate = sizes["full"] / 1e6 / large["cpu_s"] if large["cpu_s"] else float("nan")
        print(
            f"| {kind} | {large['jobs']:.0f} | {small['wall_s']:.1f} / {large['wall_s']:.1f} "
            f"| {small['cpu_s']:.1f} / {large['cpu_s']:.1f} | {rate:.2f} "
            f"| {small['peak_mb']:.0f} / {large['peak_mb']:.0f} "
            f"| {large['peak_mb'] / small['peak_mb']:.2f} |"
        )
    join = {label: results[label]["dedup_clusters"]["peak_mb"] for label in results}
    extra = (join["full"] - join["eighth"]) / max(linked["full"] - linked["eighth"], 1) * 1000
    print(
        f"\ndedup join: {linked['eighth']} / {linked['full']} documents in duplicate clusters; "
        f"peak {join['eighth']:.0f} / {join['full']:.0f} MB; {extra:.2f} MB more per thousand "
        "more such documents"
    )
    print(f"wall clock: eighth {walls['eighth']:.0f} s, full {walls['full']:.0f} s")


def dry_run(args: argparse.Namespace) -> None:
    """Time a dry run to the manifest at --dry-run-parts clean parts on a tiny corpus."""
    work = Path(args.work) / f"dry-{args.dry_run_parts}"
    shutil.rmtree(work, ignore_errors=True)
    raw = work / "raw"
    raw.mkdir(parents=True)
    for number in range(64):
        (raw / f"module_{number}.py").write_text(f"def f{number}(x):\n    return x * {number}\n")
    overlay = {
        "corpus": {"raw_dir": str(raw)},
        "clean": {"parts": args.dry_run_parts},
        "dedup": {"bucket_jobs": args.bucket_jobs},
        "shards": {"parts": args.dry_run_parts // 4},
    }
    command = snakemake_command(work, overlay, "-n")
    start = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    seconds = time.monotonic() - start
    jobs = re.search(r"^total\s+(\d+)$", result.stdout, re.MULTILINE)
    print(
        f"dry run to {TARGET} at {args.dry_run_parts} clean parts, {args.bucket_jobs} bucket "
        f"jobs, {args.dry_run_parts // 4} shards parts: {jobs[1]} jobs planned in {seconds:.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gb", type=float, default=1.0, help="size of the full corpus")
    parser.add_argument("--parts", type=int, default=8, help="clean.parts")
    parser.add_argument("--bucket-jobs", type=int, default=4, help="dedup.bucket_jobs")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--work", default="/tmp/helox-data-scale", help="working folder")
    parser.add_argument("--dry-run-parts", type=int, default=0, help="time a dry run instead")
    args = parser.parse_args()
    dry_run(args) if args.dry_run_parts else scale_table(args)


if __name__ == "__main__":
    main()
