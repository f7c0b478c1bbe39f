"""Shards stage throughput against SentencePiece's own batch encode, same texts and threads.

    python benchmarks/shards_throughput.py [--mb 8] [--threads 2]

Prints MB/s of both and, last, the ratio (goal: >= 0.9).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from corpus import stdlib_parts

from helox.common.io import iter_texts
from helox.data.corpus import DEFAULT_SOURCE
from helox.tokens.shards import PartPaths, ShardsConfig, tokenize_part
from helox.tokens.tokenizer import TokenizerConfig, build_tokenizer
from helox.tokens.vocab import load_tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=float, default=8.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        parts = stdlib_parts(tmp, int(args.mb * 1e6))
        build_tokenizer(parts, tmp / "tok", TokenizerConfig(vocab_size=8000))
        model = tmp / "tok" / "spm.model"
        texts = list(iter_texts(parts))
        megabytes = sum(len(t.encode("utf-8")) for t in texts) / 1e6
        processor = load_tokenizer(model).processor

        reference, ours = [], []
        for repeat in range(args.repeats):
            started = time.perf_counter()
            processor.encode(texts, num_threads=args.threads)
            reference.append(time.perf_counter() - started)

            outputs = PartPaths.of(tmp / f"out{repeat}", 0, [DEFAULT_SOURCE])
            started = time.perf_counter()
            tokenize_part(
                parts,
                model,
                outputs,
                ShardsConfig(),
                seed=1,
                threads=args.threads,
            )
            ours.append(time.perf_counter() - started)

    reference_rate, our_rate = megabytes / min(reference), megabytes / min(ours)
    print(f"corpus: {megabytes:.1f} MB of standard-library code, {args.threads} threads")
    print(f"sentencepiece batch encode (in memory): {reference_rate:.2f} MB/s")
    print(f"helox shards (read .jsonl.zst, encode, split, write Arrow): {our_rate:.2f} MB/s")
    print(f"ratio helox/sentencepiece: {our_rate / reference_rate:.3f}")


if __name__ == "__main__":
    main()
