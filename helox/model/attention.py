"""Attention kernels and masks: SDPA's causal (flash) kernel for plain rows, FlexAttention
block masks or a dense boolean mask for packed rows (sequences kept apart by segment id),
and the KV cache generation appends to."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention


class KVCache:
    """Keys and values of every layer for the tokens seen so far, preallocated to `capacity`."""

    def __init__(self, num_layers: int, capacity: int):
        self.capacity = capacity
        self.length = 0
        self.keys: list[Tensor | None] = [None] * num_layers
        self.values: list[Tensor | None] = [None] * num_layers

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store this step's (B, H, T, D) keys and values; return all of them so far."""
        if self.keys[layer] is None:
            shape = (*k.shape[:2], self.capacity, k.shape[-1])
            self.keys[layer] = k.new_zeros(shape)
            self.values[layer] = v.new_zeros(shape)
        end = self.length + k.size(2)
        self.keys[layer][:, :, self.length : end] = k
        self.values[layer][:, :, self.length : end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def advance(self, num_tokens: int) -> None:
        self.length += num_tokens


def causal_mask(query_len: int, key_len: int, device: torch.device) -> Tensor:
    """Boolean mask letting query i (the last `query_len` positions) see keys up to its own."""
    return torch.ones(query_len, key_len, dtype=torch.bool, device=device).tril(key_len - query_len)


def segment_mask(segment_ids: Tensor) -> Tensor:
    """(B, 1, T, T) mask for packed rows: causal, and never across a change of segment id."""
    same = segment_ids[:, :, None] == segment_ids[:, None, :]
    causal = causal_mask(segment_ids.size(1), segment_ids.size(1), segment_ids.device)
    return (same & causal).unsqueeze(1)


FlexKernels = tuple[Callable[..., BlockMask], Callable[..., Tensor]]


@functools.cache
def compiled_flex_kernels() -> FlexKernels:
    return torch.compile(create_block_mask), torch.compile(flex_attention)


def flex_kernels(device_type: str) -> FlexKernels:
    """`create_block_mask` and `flex_attention`: compiled on CUDA, where eager FlexAttention
    would materialise every score; as they are inside a compiled model (which fuses them)
    and on CPU (forward only, as torch supports it there)."""
    if device_type == "cuda" and not torch.compiler.is_compiling():
        return compiled_flex_kernels()
    return create_block_mask, flex_attention


def segment_block_mask(segment_ids: Tensor) -> BlockMask:
    """The FlexAttention form of `segment_mask`. The kernel skips the 128 × 128 tiles of the
    (T, T) grid where no query sees a key, and runs those where all do without masking."""

    def same_segment_causal(batch: Tensor, head: Tensor, query: Tensor, key: Tensor) -> Tensor:
        return (segment_ids[batch, query] == segment_ids[batch, key]) & (query >= key)

    batch, seq = segment_ids.shape
    build, _ = flex_kernels(segment_ids.device.type)
    return build(same_segment_causal, batch, None, seq, seq, device=segment_ids.device)


ATTENTION_KERNELS = ("auto", "flex", "sdpa")
AttentionMask = Tensor | BlockMask | None


FLEX_MIN_HEAD_DIM = 16  # Inductor's FlexAttention kernel: "NYI" below (seen with torch 2.11)


def packed_attention_mask(
    segment_ids: Tensor, kernel: str, dropout: float, head_size: int
) -> AttentionMask:
    """What keeps packed sequences apart, and so which kernel attends (see `attend`).

    "auto" takes FlexAttention on CUDA and SDPA with a dense boolean mask elsewhere (torch
    runs FlexAttention's backward on CUDA only); "flex" and "sdpa" force one. FlexAttention
    has no attention dropout and no compiled kernel for heads under 16 wide, so "auto" keeps
    SDPA for those.
    """
    if kernel == "flex" and dropout:
        raise ValueError("FlexAttention has no attention dropout; set model.dropout to 0")
    if kernel == "flex" and head_size < FLEX_MIN_HEAD_DIM:
        raise ValueError(
            f"FlexAttention needs heads at least {FLEX_MIN_HEAD_DIM} wide, got {head_size} "
            f"(model.hidden_size / model.num_attention_heads); use the sdpa kernel"
        )
    flex_fits = not dropout and head_size >= FLEX_MIN_HEAD_DIM
    if kernel == "flex" or (kernel == "auto" and segment_ids.is_cuda and flex_fits):
        return segment_block_mask(segment_ids)
    return segment_mask(segment_ids)


def attend(q: Tensor, k: Tensor, v: Tensor, mask: AttentionMask, dropout: float) -> Tensor:
    """Attention of (B, H, T, D) queries over (B, H_kv, S, D) keys and values (GQA when
    H_kv < H). A `BlockMask` runs FlexAttention; a boolean mask runs SDPA with it; no mask
    runs SDPA causal (its flash kernel), or unmasked for one query over a cache."""
    grouped = k.size(1) != q.size(1)
    if isinstance(mask, BlockMask):
        _, flex = flex_kernels(q.device.type)
        # Autocast casts SDPA's inputs, not FlexAttention's: match the projections' dtype.
        q, k = q.to(v.dtype), k.to(v.dtype)
        return flex(q, k, v, block_mask=mask, enable_gqa=grouped)
    seq, key_len = q.size(2), k.size(2)
    if mask is None and seq not in (1, key_len):
        mask = causal_mask(seq, key_len, q.device)
    return F.scaled_dot_product_attention(
        q,
        k,
        v,
        attn_mask=mask,
        dropout_p=dropout,
        is_causal=mask is None and seq > 1,
        enable_gqa=grouped,
    )
