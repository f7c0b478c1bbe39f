"""Peak memory of each dedup step: 4× the documents at the same duplicates, and 4× the duplicates.

Three corpora of real Python, cut into documents of 60 lines (this interpreter's site-packages,
in path order): the base, --mb MB of distinct documents plus a near-copy of each of the first
quarter of them (one run of 5% of the words replaced, Jaccard about 0.85); "4× documents", four
times the distinct documents with the same near-copies; "4× duplicates", the base's distinct
documents with a near-copy of every one. Each is split into --parts parts as `clean` writes
them, and every step (sign each part, each of --bucket-jobs bucket jobs, the join, filter each
part) runs in a fresh Python process and reports its peak RSS (VmHWM, the kernel's
high-water mark of its own memory: ru_maxrss would carry over the parent's from the fork).

Per step it prints the largest peak of its jobs on each corpus and the ratios to the base: a
step that holds no more than a block, a chunk or a part keeps near 1 on both; the join, which
holds the documents that have a duplicate, keeps near 1 on 4× documents and grows on 4×
duplicates, by the MB per thousand linked documents printed last.

    .venv/bin/python benchmarks/dedup_memory.py [--mb 16] [--parts 4] [--bucket-jobs 2]
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from helox.common.io import JsonlWriter, read_json

LINES_PER_DOCUMENT = 60
STEP = """
import sys
from helox.data.dedup import DedupConfig, filter_part
from helox.data.dedup_index import IndexSettings, sign_part
from helox.data.dedup_join import join_pairs
from helox.data.dedup_pairs import find_pairs

step, folder, parts, jobs, number = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
config = DedupConfig(bucket_jobs=jobs)
indexes = [f"{folder}/index-{part}" for part in range(parts)]
pairs = [f"{folder}/pairs-{job}.npz" for job in range(jobs)]
removed = [f"{folder}/removed-{part}.npz" for part in range(parts)]
clean = f"{folder}/clean-{number}.jsonl.zst"
if step == "sign":
    sign_part(clean, indexes[number], IndexSettings.of(config))
elif step == "buckets":
    find_pairs(indexes, number, jobs, pairs[number], config)
elif step == "join":
    join_pairs(indexes, pairs, removed, f"{folder}/stats.json")
elif step == "filter":
    filter_part(clean, removed[number], f"{folder}/dedup-{number}.jsonl.zst")
with open("/proc/self/status") as status:
    print(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
"""


def documents(max_bytes: int) -> list[str]:
    """Real Python cut into pieces of LINES_PER_DOCUMENT lines, distinct, up to `max_bytes`."""
    pieces, seen, size = [], set(), 0
    for path in sorted(Path(sysconfig.get_paths()["purelib"]).rglob("*.py")):
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (UnicodeDecodeError, OSError):
            continue
        for start in range(0, len(lines), LINES_PER_DOCUMENT):
            piece = "\n".join(lines[start : start + LINES_PER_DOCUMENT])
            if len(piece.split()) < 50 or piece in seen:
                continue
            if size + len(piece) > max_bytes:
                return pieces
            seen.add(piece)
            pieces.append(piece)
            size += len(piece)
    return pieces


def near_copy(text: str, share: float = 0.05) -> str:
    """`text` with one run of `share` of its words replaced (Jaccard about 0.85)."""
    words = text.split(" ")
    length = max(1, int(len(words) * share))
    start = random.Random(text[:64]).randrange(len(words) - length + 1)
    words[start : start + length] = ["edited"] * length
    return " ".join(words)


def write_corpus(folder: Path, distinct: list[str], copied: int, parts: int) -> int:
    """The distinct documents and a near-copy of the first `copied`, round-robin into `parts`
    parts; return the byte count."""
    folder.mkdir(parents=True)
    writers = [JsonlWriter(folder / f"clean-{part}.jsonl.zst") for part in range(parts)]
    texts = distinct + [near_copy(text) for text in distinct[:copied]]
    for number, text in enumerate(texts):
        writers[number % parts].write({"text": text, "source": f"doc{number}"})
    for writer in writers:
        writer.close()
    return sum(len(text.encode()) for text in texts)


def peak_rss_mb(*args: str) -> float:
    """Run one step in a fresh interpreter; return the peak RSS it reports in MB."""
    result = subprocess.run([sys.executable, "-c", STEP, *args], capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"step {args} failed:\n{result.stderr[-2000:]}")
    return int(result.stdout.split()[-1]) * 1024 / 1e6


def run_steps(folder: Path, parts: int, jobs: int) -> dict[str, float]:
    """Run every step on one corpus; return the largest peak RSS of each kind of step."""
    steps = [("sign", part) for part in range(parts)] + [("buckets", job) for job in range(jobs)]
    steps += [("join", 0)] + [("filter", part) for part in range(parts)]
    peaks: dict[str, float] = {}
    for step, number in steps:
        rss = peak_rss_mb(step, str(folder), str(parts), str(jobs), str(number))
        peaks[step] = max(peaks.get(step, 0.0), rss)
    return peaks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=16.0, help="distinct text of the base, MB")
    parser.add_argument("--parts", type=int, default=4)
    parser.add_argument("--bucket-jobs", type=int, default=2)
    args = parser.parse_args()

    distinct = documents(int(4 * args.mb * 1e6))
    base = distinct[: len(distinct) // 4]
    corpora = {
        "base": (base, len(base) // 4),
        "4× documents": (distinct, len(base) // 4),
        "4× duplicates": (base, len(base)),
    }
    baseline = peak_rss_mb("none", ".", "1", "1", "0")
    print(f"interpreter with numpy and helox imported: peak RSS {baseline:.1f} MB")
    peaks, linked = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, (texts, copied) in corpora.items():
            folder = Path(tmp) / label.replace(" ", "-")
            size = write_corpus(folder, texts, copied, args.parts)
            start = time.perf_counter()
            peaks[label] = run_steps(folder, args.parts, args.bucket_jobs)
            stats = read_json(folder / "stats.json")
            linked[label] = stats["clusters"]["documents"]
            print(
                f"{label}: {stats['documents_in']} documents, {size / 1e6:.1f} MB, "
                f"{args.parts} parts, {args.bucket_jobs} bucket jobs; {linked[label]} in "
                f"duplicate clusters, {stats['documents_out']} kept; "
                f"{time.perf_counter() - start:.0f} s"
            )
    print("\n| step | base | 4× documents | 4× duplicates | ratios to the base |")
    print("| --- | --- | --- | --- | --- |")
    for step in peaks["base"]:
        row = [peaks[label][step] for label in corpora]
        print(
            f"| {step} | {row[0]:.1f} MB | {row[1]:.1f} MB | {row[2]:.1f} MB "
            f"| {row[1] / row[0]:.2f}, {row[2] / row[0]:.2f} |"
        )
    more = linked["4× duplicates"] - linked["base"]
    grown = peaks["4× duplicates"]["join"] - peaks["base"]["join"]
    same = peaks["4× documents"]["join"] / peaks["base"]["join"]
    print(
        f"\njoin: {grown:.1f} MB more for {more} more documents in duplicate clusters, "
        f"{grown / more * 1000:.2f} MB per thousand; at 4× documents and the same "
        f"duplicates, ratio {same:.2f}"
    )


if __name__ == "__main__":
    main()
