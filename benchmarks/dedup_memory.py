"""Peak memory of the dedup stage on a corpus and on one 4× larger, each step in its own process.

The 1× corpus is standard-library sources cut into documents of about 60 lines; the 4× corpus
holds it 4 times, each copy after the first with a run of 5% of its words replaced (so the
stage has near-duplicates to cluster). Both are split into the same number of parts, as
`clean` would write them. Every step (sign each part, cluster, filter each part) runs in a
fresh Python process; its peak resident set (ru_maxrss) is read back with os.wait4. The
stage's peak is the largest of its steps'. The ratio, 4× over 1×, is printed last.

    .venv/bin/python benchmarks/dedup_memory.py
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from helox.common.io import JsonlWriter, read_json
from helox.data.stdlib import stdlib_files, stdlib_root

LINES_PER_DOCUMENT = 60
STEP = """
import sys
from helox.data.dedup import DedupConfig
from helox.data.dedup import cluster_parts, filter_part, sign_part
from helox.data.minhash import MinHasher

step, folder, parts, part = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
config = DedupConfig()
near = config.near
clean = f"{folder}/clean-{part}.jsonl.zst"
if step == "sign":
    hasher = MinHasher(near.num_perm, near.ngram, near.seed, config.lowercase)
    sign_part(clean, f"{folder}/signatures-{part}.npz", hasher)
elif step == "cluster":
    signatures = [f"{folder}/signatures-{i}.npz" for i in range(parts)]
    cluster_parts(signatures, f"{folder}/duplicates.npz", f"{folder}/stats.json", config)
elif step == "filter":
    filter_part(clean, f"{folder}/duplicates.npz", part, f"{folder}/dedup-{part}.jsonl.zst")
"""


def documents(max_bytes: int) -> list[str]:
    """Standard-library sources, cut into pieces of LINES_PER_DOCUMENT lines, up to max_bytes."""
    pieces, size = [], 0
    for source in stdlib_files(stdlib_root()):
        lines = source.path.read_text(encoding="utf-8", errors="replace").splitlines()
        for start in range(0, len(lines), LINES_PER_DOCUMENT):
            piece = "\n".join(lines[start : start + LINES_PER_DOCUMENT])
            if len(piece.split()) < 20:
                continue
            if size + len(piece) > max_bytes:
                return pieces
            pieces.append(piece)
            size += len(piece)
    return pieces


def variant(text: str, copy: int, share: float = 0.05) -> str:
    """Copy 0 is the text; copy k replaces one run of `share` of its words (Jaccard ≈ 0.85)."""
    if copy == 0:
        return text
    words = text.split(" ")
    length = max(1, int(len(words) * share))
    start = random.Random(f"{copy}:{text[:64]}").randrange(len(words) - length + 1)
    words[start : start + length] = [f"variant{copy}"] * length
    return " ".join(words)


def write_corpus(folder: Path, texts: list[str], copies: int, parts: int) -> int:
    """Write `copies` variants of `texts` round-robin into `parts` parts; return the byte count."""
    folder.mkdir(parents=True)
    writers = [JsonlWriter(folder / f"clean-{part}.jsonl.zst") for part in range(parts)]
    size = 0
    for copy in range(copies):
        for number, text in enumerate(texts):
            text = variant(text, copy)
            writers[number % parts].write({"text": text, "source": f"copy{copy}/doc{number}"})
            size += len(text.encode())
    for writer in writers:
        writer.close()
    return size


def peak_rss_mb(*args: str) -> tuple[float, float]:
    """Run one step in a fresh interpreter; return its peak RSS in MB and its wall time."""
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", STEP, *args])
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise RuntimeError(f"step {args} failed")
    return usage.ru_maxrss / 1024, time.perf_counter() - start


def run_stage(folder: Path, parts: int) -> float:
    """Run every step of the stage; print each one's peak RSS; return the largest."""
    steps = [("sign", part) for part in range(parts)]
    steps += [("cluster", 0)] + [("filter", part) for part in range(parts)]
    peaks = []
    for step, part in steps:
        rss, seconds = peak_rss_mb(step, str(folder), str(parts), str(part))
        label = step if step == "cluster" else f"{step} {part}"
        print(f"  {label:10s} peak RSS {rss:7.1f} MB  {seconds:6.2f} s")
        peaks.append(rss)
    return max(peaks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=8.0, help="size of the 1× corpus in MB")
    parser.add_argument("--parts", type=int, default=4)
    args = parser.parse_args()

    texts = documents(int(args.mb * 1e6))
    baseline, _ = peak_rss_mb("imports", ".", "0", "0")
    print(f"interpreter with numpy and helox imported: peak RSS {baseline:.1f} MB")
    stage_peaks = {}
    with tempfile.TemporaryDirectory() as tmp:
        for scale in (1, 4):
            folder = Path(tmp) / f"x{scale}"
            size = write_corpus(folder, texts, scale, args.parts)
            print(
                f"{scale}× corpus: {len(texts) * scale} documents, {size / 1e6:.1f} MB, "
                f"{args.parts} parts"
            )
            stage_peaks[scale] = run_stage(folder, args.parts)
            stats = read_json(folder / "stats.json")
            print(
                f"  kept {stats['documents_out']} of {stats['documents_in']} documents; "
                f"{stats['clusters']['count']} clusters, largest {stats['clusters']['largest']}"
            )
    for scale, peak in stage_peaks.items():
        print(f"dedup peak RSS, {scale}× corpus: {peak:.1f} MB")
    print(f"ratio (peak RSS 4× corpus / 1× corpus): {stage_peaks[4] / stage_peaks[1]:.2f}")


if __name__ == "__main__":
    main()
