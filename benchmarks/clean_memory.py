"""Peak memory of clean on a corpus and on the same corpus four times over.

The 1× corpus is the default one (the standard library gathered by
helox.data.stdlib, --stdlib-mb of it) plus the real prose that
clean_throughput.py reads (--prose-mb); the 4× corpus holds four copies of it in
separate folders. Each clean runs in a fresh child process (one part, the default
config) that reports its own peak resident set size (getrusage ru_maxrss), so
imports count alike on both sides. The ratio 4×/1× is printed last.

    .venv/bin/python benchmarks/clean_memory.py [--stdlib-mb 4] [--prose-mb 4]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from clean_throughput import gather_prose

from helox.data.clean import clean_part
from helox.data.clean_config import CleanConfig
from helox.data.stdlib import gather_stdlib


def clean_and_report(raw_dir: str, out_dir: str) -> None:
    """Child side: clean `raw_dir` as one part and print the counts and peak RSS as JSON."""
    out = Path(out_dir)
    stats = clean_part(
        raw_dir, 0, 1, CleanConfig(), out / "p.jsonl.zst", out / "r.jsonl.zst", out / "s.json"
    )
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_mib": peak_kib / 1024, "bytes_in": stats.flow.bytes_in}))


def measure(raw_dir: Path, out_dir: Path) -> dict[str, float]:
    out_dir.mkdir()
    command = [sys.executable, __file__, "--child", str(raw_dir), str(out_dir)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stdlib-mb", type=float, default=4.0)
    parser.add_argument("--prose-mb", type=float, default=4.0)
    parser.add_argument("--child", nargs=2, metavar=("RAW", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        clean_and_report(*args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        one = Path(tmp, "one")
        gather_stdlib(one / "stdlib", int(args.stdlib_mb * 1e6))
        (one / "prose").mkdir()
        gather_prose(one / "prose", int(args.prose_mb * 1e6))
        four = Path(tmp, "four")
        for copy in range(4):
            shutil.copytree(one, four / f"copy{copy}")
        small = measure(one, Path(tmp, "out-one"))
        large = measure(four, Path(tmp, "out-four"))
    for name, run in (("1x", small), ("4x", large)):
        print(
            f"{name}: {run['bytes_in'] / 1e6:7.2f} MB cleaned, peak RSS {run['peak_mib']:7.1f} MiB"
        )
    print(f"ratio 4x/1x peak RSS: {large['peak_mib'] / small['peak_mib']:.3f}")


if __name__ == "__main__":
    main()
