"""Near-dup signature throughput, shingling included: Helox's MinHasher against datasketch.

Both sides get the same real corpus (standard-library sources), the same word 5-gram shingles
(`shingle_texts` is the plain definition of what MinHasher hashes) and the same permutations:
datasketch's "affine64" scheme, a·x + b mod 2^64, with MinHasher's own (a, b). datasketch hashes
each shingle string with SHA-1 in Python and permutes with numpy, one document at a time;
MinHasher hashes and permutes whole batches with numpy. The best of `--repeats` interleaved
runs counts for each. The ratio is printed last.

    .venv/bin/pip install -e '.[bench]' && .venv/bin/python benchmarks/minhash_throughput.py
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

import numpy as np
from datasketch import MinHash

from helox.data.dedup_index import BATCH_CHARS
from helox.data.minhash import MinHasher, shingle_texts
from helox.data.stdlib import stdlib_files, stdlib_root


def corpus(max_bytes: int) -> list[str]:
    texts, size = [], 0
    for source in stdlib_files(stdlib_root()):
        if size + source.size > max_bytes:
            break
        texts.append(source.path.read_text(encoding="utf-8", errors="replace"))
        size += source.size
    return texts


def helox_signatures(texts: list[str], hasher: MinHasher) -> np.ndarray:
    """Signatures in the stage's batches (BATCH_CHARS characters at a time)."""
    batches, batch, chars = [], [], 0
    for text in texts:
        batch.append(text)
        chars += len(text)
        if chars >= BATCH_CHARS:
            batches.append(hasher.signatures(batch)[0])
            batch, chars = [], 0
    batches.append(hasher.signatures(batch)[0])
    return np.concatenate(batches)


def datasketch_signatures(texts: list[str], hasher: MinHasher, **scheme) -> list[MinHash]:
    shingles = (
        [s.encode() for s in shingle_texts(t, hasher.ngram, hasher.lowercase)] for t in texts
    )
    return MinHash.bulk(shingles, num_perm=hasher.num_perm, **scheme)


def seconds(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def edited(text: str, rng: random.Random, share: float = 0.05) -> str:
    words = text.split()
    for position in rng.sample(range(len(words)), max(1, int(len(words) * share))):
        words[position] = "edited"
    return " ".join(words)


def estimate_agreement(texts: list[str], hasher: MinHasher, same: dict) -> None:
    """Jaccard of (text, 5%-edited copy) pairs: truth, MinHasher's and datasketch's estimates."""
    rng = random.Random(0)
    originals = [text for text in texts if len(text.split()) > 200][:60]
    copies = [edited(text, rng) for text in originals]
    ours = hasher.signatures(originals + copies)[0]
    theirs = datasketch_signatures(originals + copies, hasher, **same)
    errors = {"helox": [], "datasketch": []}
    for i, (original, copy) in enumerate(zip(originals, copies, strict=True)):
        a = set(shingle_texts(original, hasher.ngram, hasher.lowercase))
        b = set(shingle_texts(copy, hasher.ngram, hasher.lowercase))
        truth = len(a & b) / len(a | b)
        j = len(originals) + i
        errors["helox"].append((ours[i] == ours[j]).mean() - truth)
        errors["datasketch"].append(theirs[i].jaccard(theirs[j]) - truth)
    for name, values in errors.items():
        print(
            f"  {name:10s} Jaccard estimate − truth over {len(values)} edited pairs: "
            f"mean {np.mean(values):+.4f}, mean |error| {np.mean(np.abs(values)):.4f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=4.0, help="corpus size in MB")
    parser.add_argument("--num-perm", type=int, default=128)
    parser.add_argument("--ngram", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    texts = corpus(int(args.mb * 1e6))
    megabytes = sum(len(text.encode()) for text in texts) / 1e6
    hasher = MinHasher(num_perm=args.num_perm, ngram=args.ngram)
    a, b = hasher.permutations
    same = {"scheme": "affine64", "permutations": np.array([a, b])}
    shingles = int(hasher.shingle_hashes(texts)[1].sum())
    print(f"corpus: {len(texts)} documents, {megabytes:.2f} MB, {shingles} shingles")
    print(f"num_perm {args.num_perm}, ngram {args.ngram}, best of {args.repeats}")

    timings = {"helox": [], "datasketch": [], "datasketch default": []}
    runs = {
        "helox": lambda: helox_signatures(texts, hasher),
        "datasketch": lambda: datasketch_signatures(texts, hasher, **same),
        "datasketch default": lambda: datasketch_signatures(texts, hasher),
    }
    for _ in range(args.repeats):
        for name, run in runs.items():
            timings[name].append(seconds(run))
    best = {name: min(values) for name, values in timings.items()}
    labels = {
        "helox": "helox MinHasher",
        "datasketch": "datasketch MinHash.bulk (affine64, same a, b)",
        "datasketch default": "datasketch MinHash.bulk (default affine32, own a, b)",
    }
    for name, elapsed in best.items():
        print(
            f"{labels[name]:54s} {elapsed:7.3f} s  {len(texts) / elapsed:8.1f} docs/s  "
            f"{megabytes / elapsed:6.2f} MB/s"
        )
    estimate_agreement(texts, hasher, same)
    print(f"ratio vs datasketch default scheme: {best['datasketch default'] / best['helox']:.2f}x")
    print(
        "ratio (helox / datasketch MinHash.bulk throughput, same permutations and shingles): "
        f"{best['datasketch'] / best['helox']:.2f}x"
    )


if __name__ == "__main__":
    main()
