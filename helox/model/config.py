"""The model section: the network's shape and switches, and the sizes derived from them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helox.common.config_files import section_from_file


@dataclass
class ModelConfig:
    vocab_size: int | None = None  # None = the tokenizer's vocabulary
    hidden_size: int = 256
    num_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int | None = None  # None = as many as attention heads
    head_dim: int | None = None  # None = hidden_size / num_attention_heads
    intermediate_size: int | None = None  # None = 8/3 (SwiGLU) or 4 (GELU) × hidden, to 64
    max_position_embeddings: int = 512
    use_rms_norm: bool = True
    use_swiglu: bool = True
    use_rope_embeddings: bool = True
    rope_theta: float = 10000.0
    # Llama 3.1's long-context RoPE: {rope_type: llama3, factor, low_freq_factor,
    # high_freq_factor, original_max_position_embeddings}; None = plain RoPE
    rope_scaling: dict[str, Any] | None = None
    norm_eps: float = 1e-5
    dropout: float = 0.0
    tie_word_embeddings: bool = True
    initializer_range: float = 0.02
    qk_norm: bool = False  # RMSNorm on each head's queries and keys, before RoPE (Qwen3)
    qkv_bias: bool = False  # biases on the query, key and value projections (Qwen2)
    # Mistral's attention window: sequences may be at most this long, where it equals full
    # attention; None = no window
    sliding_window: int | None = None
    logit_softcap: float | None = None  # cap·tanh(logits/cap), as Gemma 2; None = off
    family: str = "llama"  # the Hugging Face family a folder is written as (helox.model.families)

    @classmethod
    def from_file(cls, path: str | Path) -> ModelConfig:
        return section_from_file(cls, path, "model")


def kv_heads(config: ModelConfig) -> int:
    return config.num_key_value_heads or config.num_attention_heads


def head_dim(config: ModelConfig) -> int:
    return config.head_dim or config.hidden_size // config.num_attention_heads


def sequence_limit(config: ModelConfig) -> tuple[int, str]:
    """The longest sequence the model computes as it was trained to, and the model key that
    sets it: its positions, or a shorter sliding window (Helox attends over the whole
    sequence, which is what a window computes only on sequences no longer than it)."""
    window = config.sliding_window
    if window is not None and window < config.max_position_embeddings:
        return window, "sliding_window"
    return config.max_position_embeddings, "max_position_embeddings"


def intermediate_size(config: ModelConfig) -> int:
    """The MLP width: as set, else 8/3 hidden rounded up to 64 (SwiGLU) or 4 hidden (GELU)."""
    if config.intermediate_size:
        return config.intermediate_size
    if config.use_swiglu:
        return 64 * math.ceil(int(8 * config.hidden_size / 3) / 64)
    return 4 * config.hidden_size


def check_config(config: ModelConfig) -> None:
    """Raise ValueError for a shape the model cannot be built with."""
    if config.head_dim is None and config.hidden_size % config.num_attention_heads:
        raise ValueError(
            f"model.hidden_size {config.hidden_size} is not divisible by "
            f"model.num_attention_heads {config.num_attention_heads}"
        )
    if config.num_attention_heads % kv_heads(config):
        raise ValueError(
            f"model.num_attention_heads {config.num_attention_heads} is not divisible by "
            f"model.num_key_value_heads {kv_heads(config)}"
        )
    if config.use_rope_embeddings and head_dim(config) % 2:
        raise ValueError(f"rotary embeddings need an even head dimension, got {head_dim(config)}")
    scaling = config.rope_scaling
    if scaling and scaling["high_freq_factor"] <= scaling["low_freq_factor"]:
        raise ValueError(
            "model.rope_scaling.high_freq_factor must be above model.rope_scaling.low_freq_factor"
        )
    if not config.vocab_size:
        raise ValueError("model.vocab_size is not set; take it from the tokenizer's manifest")
