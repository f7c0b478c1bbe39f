"""Seconds to score the built-in next-line task, against scoring whole rows in batches.

The task is built as the pipeline builds it (200 examples, 4 choices, 6 context lines) from
the test split of standard-library shards; the model has the default pipeline's shape
(hidden 128, 1 layer, 512 positions, the tokenizer's 4000 ids), random weights, since the
time does not depend on them. Both sides score the same prompts (3 shots). The reference
runs every choice as a whole row, prompt included, 8 rows of similar length a forward (as
nanochat's CORE and lm-eval do); Helox runs each prompt once and its choices over the
prompt's cached keys and values.

    .venv/bin/python benchmarks/choice_scoring.py [--mb 4] [--batch-size 8]

Prints both times and, last, the ratio reference/Helox (above 1: the shared prompt pays).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from corpus import stdlib_parts

from helox.eval.choice import fit_question, read_choice_task, row_log_likelihoods, score_choices
from helox.eval.config import NextLineTaskConfig
from helox.eval.next_line import build_next_line_task
from helox.model.config import ModelConfig
from helox.model.device import DeviceManager
from helox.model.network import create_model_from_config
from helox.tokens.shards import ShardsConfig, build_dataset_shards
from helox.tokens.tokenizer import TokenizerConfig, build_tokenizer
from helox.tokens.vocab import load_tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=float, default=4.0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--shots", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="default: every core")
    args = parser.parse_args()
    device = DeviceManager("cpu", threads=args.threads).device
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        parts = stdlib_parts(tmp, int(args.mb * 1e6))
        build_tokenizer(parts, tmp / "tok", TokenizerConfig(vocab_size=4000, eval_docs=5))
        tokenizer = tmp / "tok" / "spm.model"
        splits = ShardsConfig(parts=1, train_split=0.96, val_split=0.02, test_split=0.02)
        build_dataset_shards(parts, tokenizer, tmp / "shards", splits, seed=1)
        task = tmp / "next_line.jsonl"
        stats = build_next_line_task(
            tmp / "shards" / "manifest.json", tokenizer, task, NextLineTaskConfig(), seed=1
        )
        examples = read_choice_task(task)
        processor = load_tokenizer(tokenizer)

    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=processor.vocab_size,
        hidden_size=128,
        num_layers=1,
        num_attention_heads=4,
        max_position_embeddings=512,
        tie_word_embeddings=False,
    )
    model = create_model_from_config(config).to(device).eval()
    started = time.perf_counter()
    fitted = [
        fit_question(processor, examples, i, args.shots, 1, 512) for i in range(len(examples))
    ]
    rows = [row for question in fitted for row in question.rows(512)[0]]
    scored = [count for question in fitted for count in question.rows(512)[1]]
    reference = row_log_likelihoods(model, rows, scored, device, args.batch_size, processor.pad)
    reference_seconds = time.perf_counter() - started
    started = time.perf_counter()
    scores = score_choices(model, processor, examples, args.shots, 1, device, args.batch_size)
    helox_seconds = time.perf_counter() - started
    ours = [value for values in scores.log_likelihoods for value in values]
    worst = max(abs(a - b) for a, b in zip(ours, reference, strict=True))
    print(
        f"task: {stats['examples']} examples from {stats['documents_used']} test documents, "
        f"{len(examples[0].choices)} choices, {args.shots} shots, {sum(scores.truncated)} "
        f"truncated; {len(rows)} rows of {sum(map(len, rows)) / len(rows):.0f} tokens on "
        f"average; {torch.get_num_threads()} threads; largest log-likelihood gap {worst:.1e}"
    )
    print(f"whole rows, {args.batch_size} a batch: {reference_seconds:.2f} s")
    print(f"helox (prompt once, choices over its cache): {helox_seconds:.2f} s")
    print(f"ratio reference/helox: {reference_seconds / helox_seconds:.2f}")


if __name__ == "__main__":
    main()
