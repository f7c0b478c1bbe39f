"""Throughput of the prose filter chain against a bare read→write pass over the same files.

The prose is real: the documentation this machine ships (Vim's help files, Git's
release notes, CMake's reference, the common licenses; see PROSE_ROOTS), copied in
path-hash order into a temporary raw folder up to --max-mb. Four passes, each
repeated --rounds times (best round kept, as other work shares the cores):

  bare   read_documents → JsonlWriter (zstd), no steps
  chain  read_documents → Gopher repetition, Gopher quality, C4, FineWeb → kept and
         rejected JsonlWriters, as clean_part writes them (every file read as web text,
         so that the four web filters see all of it)
  clean  clean_part with the default config (normalisation, length and link checks too)
  code   the same clean_part on the default corpus, the standard library gathered at
         --max-mb, for the code filters

MB/s per core is input megabytes (10^6 bytes of UTF-8) per second of this process's
CPU time: each pass runs on one core. The ratio chain/bare is printed last.

    .venv/bin/python benchmarks/clean_throughput.py [--max-mb 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

from helox.common.io import JsonlWriter
from helox.data.clean import clean_part
from helox.data.clean_config import CleanConfig
from helox.data.documents import Document, Labels, Stats
from helox.data.filters import (
    C4Filter,
    Drop,
    FineWebFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
    Step,
    apply_steps,
)
from helox.data.readers import read_documents
from helox.data.stdlib import gather_stdlib

PROSE_ROOTS = [
    Path("/usr/share/vim/vim90/doc"),
    Path("/usr/share/doc/git/RelNotes"),
    Path("/usr/share/cmake-3.25/Help"),
    Path("/usr/share/common-licenses"),
]
PROSE_SUFFIXES = {".txt", ".rst", ".md", ""}
AS_WEB = Labels(kind="web")


class Timed(Step):
    """Run a step and add up the CPU time it takes."""

    def __init__(self, step: Step):
        self.step = step
        self.name = step.name
        self.kinds = step.kinds
        self.seconds = 0.0

    def __call__(self, doc: Document, tally: Counter[str]) -> Document | Drop:
        start = time.process_time()
        result = self.step(doc, tally)
        self.seconds += time.process_time() - start
        return result


def gather_prose(raw_dir: Path, max_bytes: int) -> list[str]:
    """Copy real prose files (as .txt) into `raw_dir` up to `max_bytes`; return the roots used.

    Files from all roots are taken in the order of a hash of their path (a mix of
    every root, the same on every run), skipping any that would overrun the budget.
    """
    candidates = [
        (root, path)
        for root in PROSE_ROOTS
        if root.is_dir()
        for path in root.rglob("*")
        if path.is_file() and path.suffix in PROSE_SUFFIXES
    ]
    candidates.sort(key=lambda item: hashlib.blake2b(str(item[1]).encode()).digest())
    total = 0
    used = set()
    for root, path in candidates:
        size = path.stat().st_size
        if total + size > max_bytes:
            continue
        target = raw_dir / root.name / path.relative_to(root).with_suffix(".txt")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        total += size
        used.add(str(root))
    return sorted(used)


def bare_pass(raw_dir: Path, out: Path, config: CleanConfig) -> tuple[float, int]:
    stats = Stats()
    start = time.process_time()
    with JsonlWriter(out / "bare.jsonl.zst") as writer:
        for doc in read_documents(raw_dir, config, stats, labels=AS_WEB):
            stats.count_in(doc)
            writer.write(doc.record())
    return time.process_time() - start, stats.flow.bytes_in


def chain_pass(raw_dir: Path, out: Path, config: CleanConfig, steps: list[Step]) -> float:
    stats = Stats()
    start = time.process_time()
    with (
        JsonlWriter(out / "kept.jsonl.zst") as kept,
        JsonlWriter(out / "rejected.jsonl.zst") as rejected,
    ):
        for doc in read_documents(raw_dir, config, stats, labels=AS_WEB):
            result, dropped = apply_steps(doc, steps, stats)
            if dropped is None:
                kept.write(result.record())
            else:
                rejected.write({**result.record(), **dropped.record()})
    return time.process_time() - start


def clean_pass(raw_dir: Path, out: Path, config: CleanConfig) -> tuple[float, Stats]:
    start = time.process_time()
    stats = clean_part(
        raw_dir, 0, 1, config, out / "c.jsonl.zst", out / "r.jsonl.zst", out / "s.json"
    )
    return time.process_time() - start, stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-mb", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    config = CleanConfig()
    with tempfile.TemporaryDirectory() as tmp:
        raw_dir, out = Path(tmp, "raw"), Path(tmp, "out")
        raw_dir.mkdir()
        out.mkdir()
        roots = gather_prose(raw_dir, int(args.max_mb * 1e6))
        code_dir = Path(tmp, "stdlib")
        gather_stdlib(code_dir, int(args.max_mb * 1e6))
        bare, chain, clean, code = [], [], [], []
        timed: list[Timed] = []
        for _ in range(args.rounds):
            seconds, size = bare_pass(raw_dir, out, config)
            bare.append(seconds)
            timed = [
                Timed(GopherRepetitionFilter(config.gopher_repetition)),
                Timed(GopherQualityFilter(config.gopher_quality)),
                Timed(C4Filter(config.c4)),
                Timed(FineWebFilter(config.fineweb)),
            ]
            chain.append(chain_pass(raw_dir, out, config, list(timed)))
            seconds, stats = clean_pass(raw_dir, out, config)
            clean.append(seconds)
            seconds, code_stats = clean_pass(code_dir, out, config)
            code.append(seconds)
    megabytes = size / 1e6
    print(f"corpus: {megabytes:.2f} MB of real prose from {', '.join(roots)}")
    print(f"rounds: {args.rounds} (best CPU time of each pass)")
    print(
        f"kept by the default clean (by kind): {stats.flow.documents_out} of "
        f"{stats.flow.documents_in} documents, {stats.flow.bytes_out / stats.flow.bytes_in:.1%} "
        "of bytes"
    )
    print("CPU seconds per step in the last chain round:")
    for step in timed:
        print(f"  {step.name:18s} {step.seconds:6.2f} s  {megabytes / step.seconds:7.2f} MB/s")
    filters_only = sum(step.seconds for step in timed)
    print(f"filters alone (4 steps):      {megabytes / filters_only:7.2f} MB/s per core")
    print(f"clean_part, default config:   {megabytes / min(clean):7.2f} MB/s per core")
    code_megabytes = code_stats.flow.bytes_in / 1e6
    print(
        f"clean_part, standard library:  {code_megabytes / min(code):7.2f} MB/s per core "
        f"({code_megabytes:.2f} MB, kept {code_stats.flow.documents_out} "
        f"of {code_stats.flow.documents_in})"
    )
    print(f"bare read→write:              {megabytes / min(bare):7.2f} MB/s per core")
    print(f"chain read→4 filters→write:   {megabytes / min(chain):7.2f} MB/s per core")
    print(f"ratio chain/bare: {min(bare) / min(chain):.3f}")


if __name__ == "__main__":
    main()
