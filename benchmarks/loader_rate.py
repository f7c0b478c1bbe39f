"""Loader speed against the speed at which the shipped model consumes batches.

    python benchmarks/loader_rate.py [--mb 4]

Builds shards from real text, its files dealt to two corpus sources, and times one training
step of the model that `config.yaml` ships and three loaders (memory-mapped, packed,
shuffled) at the shipped batch size and sequence length: `PackedBatches` over the whole train
split (the reference), and what pretraining reads, `MixedBatches`, over one source and over
the two mixed 1:3. Prints the ratio of the mixed loader to the reference (goal: >= 0.5) and,
last, that of the loader to the model (goal: >= 50).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import torch
from corpus import stdlib_parts

from helox.common.config_files import load_mapping, section_from_dict
from helox.model.config import ModelConfig
from helox.model.network import create_model_from_config
from helox.tokens.loader import PackedBatches, TokenStream
from helox.tokens.mixture import mixed_batches
from helox.tokens.shards import ShardsConfig, build_dataset_shards
from helox.tokens.tokenizer import TokenizerConfig, build_tokenizer
from helox.train.config import TrainingConfig
from helox.train.optim import build_optimizer

REPO = Path(__file__).resolve().parents[1]


def batches_per_second(batches, count: int) -> float:
    """Batches a second that `batches` (any training loader) gives over `count` batches."""
    started = time.perf_counter()
    for _ in range(count):
        next(batches)
    return count / (time.perf_counter() - started)


def steps_per_second(
    model_config: ModelConfig, training: TrainingConfig, vocab_size: int, count: int
) -> float:
    model = create_model_from_config(dataclasses.replace(model_config, vocab_size=vocab_size))
    optimizer = build_optimizer(model, training, torch.device("cpu"))
    shape = (training.batch_size, training.seq_len)
    inputs = torch.randint(0, vocab_size, shape)
    for step in range(count + 2):
        if step == 2:
            started = time.perf_counter()
        model(inputs, inputs).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=float, default=4.0)
    args = parser.parse_args()
    config = load_mapping(REPO / "config.yaml")
    model_config = section_from_dict(ModelConfig, config["model"], "model")
    training = section_from_dict(TrainingConfig, config["pretrain"], "pretrain")
    vocab_size = config["tokenizer"]["vocab_size"]
    sources = ("a", "b")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        parts = stdlib_parts(tmp, int(args.mb * 1e6), sources=sources)
        build_tokenizer(parts, tmp / "tok", TokenizerConfig(vocab_size=vocab_size))
        shards = tmp / "shards"
        manifest = build_dataset_shards(
            parts, tmp / "tok" / "spm.model", shards, ShardsConfig(parts=1), 1, sources=sources
        )
        # The one-source loader reads source "a" only, the reference all of the train split.
        lone = {**manifest, "sources": {"a": manifest["sources"]["a"]}}
        (shards / "lone.json").write_text(json.dumps(lone))
        seq_len, batch_size = training.seq_len, training.batch_size
        rates = {
            "PackedBatches, whole train split": PackedBatches(
                TokenStream(shards / "manifest.json", "train"), seq_len, batch_size, 1
            ),
            "MixedBatches, one source": mixed_batches(
                shards / "lone.json", None, seq_len, batch_size, 1
            ),
            "MixedBatches, two sources 1:3": mixed_batches(
                shards / "manifest.json", {"a": 1, "b": 3}, seq_len, batch_size, 1
            ),
        }
        rates = {name: batches_per_second(batches, 2000) for name, batches in rates.items()}
        model_rate = steps_per_second(model_config, training, manifest["vocab_size"], 10)
    print(f"batch {batch_size} x {seq_len} tokens")
    for name, rate in rates.items():
        print(f"loader {name}: {rate:,.0f} batches/s")
    mixed = rates["MixedBatches, two sources 1:3"]
    print(f"ratio mixed/packed: {mixed / rates['PackedBatches, whole train split']:.2f}")
    print(f"shipped model training: {model_rate:.2f} steps/s")
    print(f"ratio loader/model: {mixed / model_rate:,.0f}")


if __name__ == "__main__":
    main()
