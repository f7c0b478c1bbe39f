"""Loader speed against the speed at which the shipped model consumes batches.

    python benchmarks/loader_rate.py [--mb 4]

Builds shards from real text, times `PackedBatches` (memory-mapped, packed, shuffled)
and one training step of the model that `config.yaml` ships, both at the shipped batch
size and sequence length. Prints the ratio last (goal: >= 50).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import torch
from corpus import stdlib_parts

from helox.common.config_files import load_mapping, section_from_dict
from helox.model.config import ModelConfig
from helox.model.network import create_model_from_config
from helox.tokens.loader import PackedBatches, TokenStream
from helox.tokens.shards import ShardsConfig, build_dataset_shards
from helox.tokens.tokenizer import TokenizerConfig, build_tokenizer
from helox.train.config import TrainingConfig
from helox.train.optim import build_optimizer

REPO = Path(__file__).resolve().parents[1]


def batches_per_second(batches: PackedBatches, count: int) -> float:
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
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        parts = stdlib_parts(tmp, int(args.mb * 1e6))
        build_tokenizer(parts, tmp / "tok", TokenizerConfig(vocab_size=vocab_size))
        manifest = build_dataset_shards(
            parts, tmp / "tok" / "spm.model", tmp / "shards", ShardsConfig(parts=1), seed=1
        )
        stream = TokenStream(tmp / "shards" / "manifest.json", "train")
        batches = PackedBatches(stream, training.seq_len, training.batch_size, 1)
        loader_rate = batches_per_second(batches, 2000)
        model_rate = steps_per_second(model_config, training, manifest["vocab_size"], 10)
    print(f"batch {training.batch_size} x {training.seq_len} tokens")
    print(f"loader: {loader_rate:,.0f} batches/s")
    print(f"shipped model training: {model_rate:.2f} steps/s")
    print(f"ratio loader/model: {loader_rate / model_rate:,.0f}")


if __name__ == "__main__":
    main()
