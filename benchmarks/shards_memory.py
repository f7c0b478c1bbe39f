"""Peak memory of the shards stage on a 4x larger corpus against the 1x corpus.

    python benchmarks/shards_memory.py [--mb 4]

Each measurement runs the stage in a fresh child process (this script with --child),
which reports its own peak RSS. Prints the ratio last (goal: <= 1.3).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from corpus import stdlib_parts

from helox.data.corpus import DEFAULT_SOURCE
from helox.tokens.shards import PartPaths, ShardsConfig, tokenize_part
from helox.tokens.tokenizer import TokenizerConfig, build_tokenizer


def child(model: str, out: str, parts: list[str]) -> None:
    """Run the stage and print its train-split stats and peak RSS as JSON."""
    outputs = PartPaths.of(out, 0, [DEFAULT_SOURCE])
    stats = tokenize_part(parts, model, outputs, ShardsConfig(), seed=1)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_mb": peak_mb, "train": stats["splits"]["train"]}))


def measure(model: Path, out: Path, parts: list[Path]) -> dict:
    command = [sys.executable, __file__, "--child", str(model), str(out), *map(str, parts)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=float, default=4.0)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.child[2:])
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "x1").mkdir()
        (tmp / "x4").mkdir()
        small = stdlib_parts(tmp / "x1", int(args.mb * 1e6))
        large = stdlib_parts(tmp / "x4", int(args.mb * 1e6), copies=4)
        build_tokenizer(small, tmp / "tok", TokenizerConfig(vocab_size=8000))
        model = tmp / "tok" / "spm.model"
        one, four = measure(model, tmp / "out1", small), measure(model, tmp / "out4", large)
    for name, run in (("1x", one), ("4x", four)):
        print(
            f"{name}: {run['train']['bytes'] / 1e6:.1f} MB of train text, "
            f"peak RSS {run['peak_mb']:.0f} MB"
        )
    print(f"ratio 4x/1x peak memory: {four['peak_mb'] / one['peak_mb']:.3f}")


if __name__ == "__main__":
    main()
