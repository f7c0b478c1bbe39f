"""Where each token sits: rotary embeddings (RoPE, Llama's layout) or learned absolute
positions (GPT-2), the two choices of `ModelConfig.use_rope_embeddings`."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from helox.model.config import ModelConfig, head_dim

Rope = tuple[Tensor, Tensor] | None


def rope_inv_freq(dim: int, theta: float) -> Tensor:
    """1 / theta^(2i/d) for i < d/2, in fp32."""
    return 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim)


def llama3_inv_freq(inv_freq: Tensor, scaling: dict[str, Any]) -> Tensor:
    """Llama 3.1's long-context frequencies: wavelengths beyond original/low_freq_factor
    positions are slowed by `factor`, those under original/high_freq_factor kept, and those
    between blended linearly in original/wavelength."""
    original, factor = scaling["original_max_position_embeddings"], scaling["factor"]
    low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
    wavelength = 2 * math.pi / inv_freq
    kept = ((original / wavelength - low) / (high - low)).clamp(0.0, 1.0)
    return (1 - kept) * inv_freq / factor + kept * inv_freq


def rope_frequencies(config: ModelConfig) -> Tensor:
    """The rotation frequencies of `config`: plain RoPE, or scaled as its `rope_scaling` says."""
    inv_freq = rope_inv_freq(head_dim(config), config.rope_theta)
    if config.rope_scaling is None:
        return inv_freq
    return llama3_inv_freq(inv_freq, config.rope_scaling)


def rotate_half(x: Tensor) -> Tensor:
    """(x1, x2) -> (-x2, x1) over the two halves of the last dimension."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(q: Tensor, k: Tensor, rope: Rope) -> tuple[Tensor, Tensor]:
    """Rotate queries and keys (B, H, T, D) by their positions; unchanged when `rope` is None."""
    if rope is None:
        return q, k
    cos, sin = rope
    cos, sin = cos.to(q.dtype), sin.to(q.dtype)
    return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin


class RotaryEmbedding(nn.Module):
    """Cos/sin tables for every position, computed once in fp32; holds no parameters."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        inv_freq = rope_frequencies(config)
        positions = torch.arange(config.max_position_embeddings, dtype=torch.float32)
        angles = torch.outer(positions, inv_freq)
        angles = torch.cat((angles, angles), dim=-1)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, hidden: Tensor, position_ids: Tensor) -> tuple[Tensor, Rope]:
        cos = self.cos[position_ids].unsqueeze(-3)
        sin = self.sin[position_ids].unsqueeze(-3)
        return hidden, (cos, sin)


class LearnedPositionEmbedding(nn.Module):
    """GPT-2 style absolute positions: a learned vector added to each token embedding."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.wpe = nn.Embedding(config.max_position_embeddings, config.hidden_size)

    def forward(self, hidden: Tensor, position_ids: Tensor) -> tuple[Tensor, Rope]:
        return hidden + self.wpe(position_ids), None


def make_positions(config: ModelConfig) -> nn.Module:
    if config.use_rope_embeddings:
        return RotaryEmbedding(config)
    return LearnedPositionEmbedding(config)
