"""Small random models for the tests: a Llama-shaped config of two layers, and its network built
from a fixed seed."""

from __future__ import annotations

from typing import Any

import torch

from helox.model.config import ModelConfig
from helox.model.network import HeloxLM, create_model_from_config


def tiny_config(vocab_size: int, max_positions: int, /, **changes: Any) -> ModelConfig:
    """Two layers of width 64 in four heads, over `vocab_size` pieces and `max_positions`
    positions, with `changes` (any of its keys) on top."""
    sizes = {"vocab_size": vocab_size, "max_position_embeddings": max_positions}
    shape = {"hidden_size": 64, "num_layers": 2, "num_attention_heads": 4}
    return ModelConfig(**{**sizes, **shape, **changes})


def seeded_model(config: ModelConfig, seed: int = 0) -> HeloxLM:
    """`config`'s network with the weights that `seed` draws."""
    torch.manual_seed(seed)
    return create_model_from_config(config)
