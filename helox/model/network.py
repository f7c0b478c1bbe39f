"""A Llama-style decoder-only language model, with KV-cached generation.

Parameter names, RoPE layout and RMSNorm arithmetic follow Hugging Face's
`LlamaForCausalLM`, so `HeloxLM.state_dict()` copies into one key for key:
`model.embed_tokens`, `model.layers.{i}.self_attn.{q,k,v,o}_proj`,
`model.layers.{i}.mlp.{gate,up,down}_proj`, `model.norm`, `lm_head`.
The switches of `ModelConfig` pick a component in the factory functions below; the
attention kernels, masks and KV cache are helox.model.attention's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from helox.model.attention import (
    ATTENTION_KERNELS,
    AttentionMask,
    KVCache,
    attend,
    packed_attention_mask,
)
from helox.model.config import (
    ModelConfig,
    check_config,
    head_dim,
    intermediate_size,
    kv_heads,
    sequence_limit,
)
from helox.model.positions import Rope, apply_rotary, make_positions

IGNORE_INDEX = -100


# ---------------------------------------------------------------------------- normalisation


class RMSNorm(nn.Module):
    """Root-mean-square norm computed in fp32, then scaled by a learned weight (as Llama)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * normed.to(x.dtype)


def make_norm(config: ModelConfig) -> nn.Module:
    if config.use_rms_norm:
        return RMSNorm(config.hidden_size, config.norm_eps)
    return nn.LayerNorm(config.hidden_size, eps=config.norm_eps)


# ---------------------------------------------------------------------------- projections


def project(x: Tensor, layers: tuple[nn.Linear, ...], fuse: bool) -> tuple[Tensor, ...]:
    """`x` through projections that share it as input (all with biases or none); one matmul
    when `fuse`.

    Fusing concatenates the weights on the fly: under autocast that copy replaces the
    cast each weight gets anyway, and the parameters keep their own names. Layers another
    library replaced (torchao's Float8Linear) or that carry LoRA adapters run one by one.
    """
    if fuse and all(type(layer) is nn.Linear for layer in layers):
        weight = torch.cat([layer.weight for layer in layers])
        biases = [layer.bias for layer in layers if layer.bias is not None]
        bias = torch.cat(biases) if biases else None
        return F.linear(x, weight, bias).split([layer.out_features for layer in layers], dim=-1)
    return tuple(layer(x) for layer in layers)


# ---------------------------------------------------------------------------- attention


def make_qk_norm(config: ModelConfig) -> nn.Module:
    """QK-norm (Dehghani et al. 2023): RMSNorm over each head's queries or keys; off, identity."""
    return RMSNorm(head_dim(config), config.norm_eps) if config.qk_norm else nn.Identity()


class Attention(nn.Module):
    """Multi-head causal self-attention with grouped key/value heads (GQA); biases on the
    query, key and value projections with `qkv_bias`, none on the output."""

    def __init__(self, config: ModelConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = kv_heads(config)
        self.head_dim = head_dim(config)
        self.dropout = config.dropout
        q_size, kv_size = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        self.q_proj = nn.Linear(config.hidden_size, q_size, bias=config.qkv_bias)
        self.k_proj = nn.Linear(config.hidden_size, kv_size, bias=config.qkv_bias)
        self.v_proj = nn.Linear(config.hidden_size, kv_size, bias=config.qkv_bias)
        self.o_proj = nn.Linear(q_size, config.hidden_size, bias=False)
        self.q_norm = make_qk_norm(config)
        self.k_norm = make_qk_norm(config)

    def forward(
        self, x: Tensor, rope: Rope, cache: KVCache | None = None, mask: AttentionMask = None
    ) -> Tensor:
        """Causal attention; a `mask` from `packed_attention_mask` replaces the causal one."""
        batch, seq, _ = x.shape
        q, k, v = project(x, (self.q_proj, self.k_proj, self.v_proj), fuse=self.training)
        q = q.view(batch, seq, self.num_heads, self.head_dim).transpose(1, 2)
        k = k.view(batch, seq, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = v.view(batch, seq, self.num_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(self.q_norm(q), self.k_norm(k), rope)
        if cache is not None:
            k, v = cache.update(self.layer_idx, k, v)
        y = attend(q, k, v, mask, self.dropout if self.training else 0.0)
        return self.o_proj(y.transpose(1, 2).reshape(batch, seq, -1))


# ---------------------------------------------------------------------------- MLP


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)), as Llama."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        width = intermediate_size(config)
        self.gate_proj = nn.Linear(config.hidden_size, width, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, width, bias=False)
        self.down_proj = nn.Linear(width, config.hidden_size, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = project(x, (self.gate_proj, self.up_proj), fuse=self.training)
        return self.down_proj(F.silu(gate) * up)


class GeluMLP(nn.Module):
    """down(gelu(up(x))), as GPT-2."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        width = intermediate_size(config)
        self.up_proj = nn.Linear(config.hidden_size, width, bias=False)
        self.down_proj = nn.Linear(width, config.hidden_size, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.gelu(self.up_proj(x)))


def make_mlp(config: ModelConfig) -> nn.Module:
    return SwiGLU(config) if config.use_swiglu else GeluMLP(config)


# ---------------------------------------------------------------------------- model


def make_dropout(config: ModelConfig) -> nn.Module:
    """Dropout at `config.dropout` while training; nothing at all when it is 0."""
    return nn.Dropout(config.dropout) if config.dropout else nn.Identity()


class Block(nn.Module):
    """Pre-norm transformer block: x + drop(attn(norm(x))), then x + drop(mlp(norm(x)))."""

    def __init__(self, config: ModelConfig, layer_idx: int):
        super().__init__()
        self.input_layernorm = make_norm(config)
        self.self_attn = Attention(config, layer_idx)
        self.post_attention_layernorm = make_norm(config)
        self.mlp = make_mlp(config)
        self.residual_dropout = make_dropout(config)

    def forward(
        self, x: Tensor, rope: Rope, cache: KVCache | None = None, mask: AttentionMask = None
    ) -> Tensor:
        x = x + self.residual_dropout(self.self_attn(self.input_layernorm(x), rope, cache, mask))
        return x + self.residual_dropout(self.mlp(self.post_attention_layernorm(x)))


class HeloxModel(nn.Module):
    """The decoder stack without the output head (Hugging Face's `LlamaModel`)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.max_sequence, self.max_sequence_key = sequence_limit(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.positions = make_positions(config)
        self.embed_dropout = make_dropout(config)
        self.layers = nn.ModuleList(Block(config, i) for i in range(config.num_layers))
        self.norm = make_norm(config)
        self.dropout = config.dropout
        self.head_size = head_dim(config)
        self.gradient_checkpointing = False
        self.attention_kernel = "auto"

    def forward(
        self,
        input_ids: Tensor,
        position_ids: Tensor | None = None,
        cache: KVCache | None = None,
        segment_ids: Tensor | None = None,
    ) -> Tensor:
        """Hidden states (B, T, D). `segment_ids` (B, T) keep packed sequences apart."""
        past = cache.length if cache is not None else 0
        if position_ids is None:
            if past + input_ids.size(1) > self.max_sequence:
                raise ValueError(
                    f"sequence of {past + input_ids.size(1)} tokens exceeds "
                    f"model.{self.max_sequence_key} {self.max_sequence}"
                )
            position_ids = torch.arange(past, past + input_ids.size(1), device=input_ids.device)
        x, rope = self.positions(self.embed_tokens(input_ids), position_ids)
        x = self.embed_dropout(x)
        mask = None
        if segment_ids is not None:
            dropout = self.dropout if self.training else 0.0
            mask = packed_attention_mask(
                segment_ids, self.attention_kernel, dropout, self.head_size
            )
        for layer in self.layers:
            if self.gradient_checkpointing and self.training:
                x = checkpoint(layer, x, rope, None, mask, use_reentrant=False)
            else:
                x = layer(x, rope, cache, mask)
        if cache is not None:
            cache.advance(input_ids.size(1))
        return self.norm(x)


class LMOutput(NamedTuple):
    logits: Tensor | None
    loss: Tensor | None


class HeloxLM(nn.Module):
    """Decoder plus language-model head (Hugging Face's `LlamaForCausalLM`)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        check_config(config)
        self.config = config
        self.model = HeloxModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.apply(self._init_weights)
        residual_std = config.initializer_range / math.sqrt(2 * config.num_layers)
        for name, param in self.named_parameters():
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                nn.init.normal_(param, mean=0.0, std=residual_std)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """Recompute each block's activations in backward instead of storing them."""
        self.model.gradient_checkpointing = enabled

    def set_attention_kernel(self, kernel: str) -> None:
        """How packed rows attend: "auto" (FlexAttention on CUDA), "flex" or "sdpa"."""
        if kernel not in ATTENTION_KERNELS:
            raise ValueError(f"unknown attention kernel {kernel!r}; use one of {ATTENTION_KERNELS}")
        self.model.attention_kernel = kernel

    def forward(
        self,
        input_ids: Tensor,
        labels: Tensor | None = None,
        position_ids: Tensor | None = None,
        cache: KVCache | None = None,
        segment_ids: Tensor | None = None,
        return_logits: bool = True,
    ) -> LMOutput:
        """Logits (B, T, V); with `labels` (already shifted, -100 ignored) also the mean loss.

        Packed rows pass `position_ids` restarting at 0 and `segment_ids` numbering the
        sequences, so no token attends to another sequence of its row. Training passes
        `return_logits=False` when it needs only the loss: a compiled model then need not
        hand back a (B, T, V) tensor, and can fuse the head's output into the loss.
        """
        logits = self.lm_head(self.model(input_ids, position_ids, cache, segment_ids))
        if self.config.logit_softcap:
            cap = self.config.logit_softcap
            logits = cap * torch.tanh(logits / cap)
        if labels is None:
            return LMOutput(logits, None)
        loss = F.cross_entropy(
            logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX
        )
        return LMOutput(logits if return_logits else None, loss)

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        """Count of distinct parameters; optionally without the lookup-only embedding tables."""
        skipped = set()
        if exclude_embeddings:
            skipped = {id(p) for p in self._lookup_tables()}
        return sum(p.numel() for p in self.parameters() if id(p) not in skipped)

    def _lookup_tables(self) -> list[Tensor]:
        """Parameters used only by lookup, which cost no multiply-adds."""
        tables = [p for n, p in self.named_parameters() if n.endswith("wpe.weight")]
        if not self.config.tie_word_embeddings:
            tables.append(self.model.embed_tokens.weight)
        return tables

    def flops_per_token(self, seq_len: int) -> int:
        """Training FLOPs per token: 6N for the weights (4 for a frozen one, whose gradient is
        not computed) plus 12·L·d·T for attention (PaLM)."""
        matmul_params = self.num_parameters(exclude_embeddings=True)
        lookup = {id(p) for p in self._lookup_tables()}
        frozen = sum(
            p.numel() for p in self.parameters() if not p.requires_grad and id(p) not in lookup
        )
        attention_width = self.config.num_attention_heads * head_dim(self.config)
        attention = 12 * self.config.num_layers * attention_width * seq_len
        return 6 * matmul_params - 2 * frozen + attention

    @torch.no_grad()
    def generate(
        self,
        input_ids: Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        eos_id: int | Sequence[int] | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Extend each row of `input_ids` (B, T) by sampled tokens; greedy when temperature is 0.

        Rows that emit `eos_id` (or any of several stop ids) are padded with it; generation
        stops once every row has. Returns the prompt followed by the new tokens.
        """
        stops = None if eos_id is None else torch.tensor(eos_id, device=input_ids.device).view(-1)
        total = input_ids.size(1) + max_new_tokens
        if total > self.model.max_sequence:
            raise ValueError(
                f"prompt of {input_ids.size(1)} tokens + {max_new_tokens} new tokens exceeds "
                f"model.{self.model.max_sequence_key} {self.model.max_sequence}"
            )
        was_training = self.training
        self.eval()
        cache = KVCache(self.config.num_layers, total)
        finished = torch.zeros(input_ids.size(0), dtype=torch.bool, device=input_ids.device)
        tokens = [input_ids]
        logits = self(input_ids, cache=cache).logits[:, -1]
        for step in range(max_new_tokens):
            next_ids = sample_next_token(logits, temperature, top_k, top_p, generator)
            if stops is not None:
                next_ids = torch.where(finished, stops[0], next_ids)
                finished |= torch.isin(next_ids, stops)
            tokens.append(next_ids[:, None])
            if step + 1 == max_new_tokens or (stops is not None and bool(finished.all())):
                break
            logits = self(next_ids[:, None], cache=cache).logits[:, -1]
        self.train(was_training)
        return torch.cat(tokens, dim=1)


def sample_next_token(
    logits: Tensor,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    generator: torch.Generator | None,
) -> Tensor:
    """One token per row of `logits` (B, V): argmax at temperature 0, else top-k/top-p sampling."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        outside = probs.cumsum(dim=-1) - probs > top_p
        sorted_logits = sorted_logits.masked_fill(outside, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def create_model_from_config(config: ModelConfig) -> HeloxLM:
    return HeloxLM(config)
