"""What one training step costs on a GPU: parameters, FLOPs per token, and the memory of
weights, gradients, optimizer state and activations under bf16 autocast, on one GPU or on each
of several under DDP or FSDP2, training every weight or LoRA adapters on the frozen model
(helox.pipeline.plan sizes models and budgets with it)."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import torch

from helox.model.config import ModelConfig, head_dim, intermediate_size, kv_heads
from helox.model.lora import apply_lora
from helox.model.lora_config import LoRAConfig
from helox.model.network import HeloxLM

GIB = 1 << 30
RUNTIME_BYTES = 1 * GIB  # CUDA context, cuBLAS workspaces, compiled kernels


@dataclass(frozen=True)
class Device:
    """One GPU: its memory and its dense bf16 tensor-core peak from the vendor's data sheet."""

    label: str
    memory_gib: float
    peak_flops: float


# A100 and H100 as in helox.train.metrics.BF16_PEAK_FLOPS (a test keeps them equal); the
# RTX 4090's 165.2 TFLOP/s is bf16 with fp32 accumulation, dense (Ada whitepaper).
DEVICES = {
    "rtx4090": Device("NVIDIA RTX 4090 24 GB", 24, 165.2e12),
    "a100-40gb": Device("NVIDIA A100 40 GB", 40, 312e12),
    "a100-80gb": Device("NVIDIA A100 80 GB", 80, 312e12),
    "h100": Device("NVIDIA H100 80 GB SXM", 80, 989e12),
}


def count_model(model: ModelConfig, seq_len: int) -> tuple[int, int, int]:
    """(parameters, those Muon takes, training FLOPs per token), from the model built on
    the meta device, so no memory is spent and the count is HeloxLM's own."""
    return _count_model(dataclasses.astuple(model), seq_len)


@functools.cache
def _count_model(model_fields: tuple, seq_len: int) -> tuple[int, int, int]:
    with torch.device("meta"):
        built = HeloxLM(ModelConfig(*model_fields))
    hidden = sum(
        p.numel()
        for name, p in built.named_parameters()
        if p.dim() == 2 and (".self_attn." in name or ".mlp." in name)
    )
    return built.num_parameters(), hidden, built.flops_per_token(seq_len)


def block_parameters(model: ModelConfig) -> int:
    """Parameters of one decoder block, FSDP's unit of gathering (all blocks are alike)."""
    return _block_parameters(dataclasses.astuple(model))


@functools.cache
def _block_parameters(model_fields: tuple) -> int:
    with torch.device("meta"):
        built = HeloxLM(dataclasses.replace(ModelConfig(*model_fields), num_layers=1))
    return sum(p.numel() for p in built.model.layers[0].parameters())


def adapter_parameters(model: ModelConfig, lora: LoRAConfig) -> int:
    """Parameters of `lora`'s adapters on `model`: rank × (in + out) of each projection they
    adapt, counted on the model built on the meta device."""
    return _adapter_parameters(dataclasses.astuple(model), lora.rank, tuple(lora.targets))


@functools.cache
def _adapter_parameters(model_fields: tuple, rank: int, targets: tuple[str, ...]) -> int:
    with torch.device("meta"):
        built = HeloxLM(ModelConfig(*model_fields))
        apply_lora(built, LoRAConfig(rank=rank, targets=list(targets)), "lora")
    return sum(p.numel() for p in built.parameters() if p.requires_grad)


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes one GPU holds at the peak of a training step under bf16 autocast."""

    weights: int  # fp32 masters plus the bf16 copies autocast makes for the matmuls
    gradients: int  # fp32, of the weights that train
    optimizer: int  # AdamW: two fp32 moments; Muon: one fp32 momentum (of the same)
    activations: int  # what backward needs, for the whole micro-batch
    checkpointed_activations: int  # the same with gradient checkpointing

    def total(self, gradient_checkpointing: bool) -> int:
        activations = self.checkpointed_activations if gradient_checkpointing else self.activations
        return self.weights + self.gradients + self.optimizer + activations + RUNTIME_BYTES

    def breakdown(self) -> str:
        """`weights W + gradients G + ... = T GiB; with gradient checkpointing C GiB`."""
        parts = (
            ("weights", self.weights),
            ("gradients", self.gradients),
            ("optimizer", self.optimizer),
            ("activations", self.activations),
            ("runtime", RUNTIME_BYTES),
        )
        return (
            " + ".join(f"{name} {value / GIB:.1f}" for name, value in parts)
            + f" = {self.total(False) / GIB:.1f} GiB; with gradient checkpointing "
            + f"{self.total(True) / GIB:.1f} GiB"
        )


def layer_activation_bytes(model: ModelConfig) -> int:
    """Bytes a compiled block keeps per token for backward under bf16 autocast: the fp32
    residual stream entering its two RMSNorms (8h), their bf16 outputs (4h), the queries
    after RoPE and the attention output (4h), keys and values (4·kv), and SwiGLU's gate and
    up projections (4i); Inductor recomputes the rest. On an H100 this put a 124M step at
    8.3 GiB against 7.7 measured, and a 1.3B one at 46.9 against 47.1 (benchmarks/RESULTS.md)."""
    width = model.hidden_size
    kv_width = kv_heads(model) * head_dim(model)
    return 16 * width + 4 * kv_width + 4 * intermediate_size(model)


def estimate_memory(
    model: ModelConfig,
    seq_len: int,
    micro_batch: int,
    optimizer: str,
    processes: int = 1,
    fsdp: bool = False,
    lora: LoRAConfig | None = None,
) -> MemoryEstimate:
    """Weights, gradients, optimizer states and activations of one training step on each of
    `processes` GPUs: whole under DDP (Helox's keeps the gradients in its reduction buckets,
    so they are not held twice), in shards under FSDP2 (`fsdp`), which gathers bf16 weights
    a block at a time. With `lora`, only the adapters have gradients and AdamW's moments
    (Muon takes none of them); the frozen weights are held as ever, and the activations are
    full fine-tuning's: the adapters read the inputs the projections keep anyway, and their
    rank-wide products are small beside them."""
    params, hidden, _ = count_model(model, seq_len)
    if lora is None:
        trained = params
        states = 4 * hidden + 8 * (params - hidden) if optimizer == "muon" else 8 * params
    else:
        trained = adapter_parameters(model, lora)
        params, states = params + trained, 8 * trained
    tokens = micro_batch * seq_len
    per_layer = layer_activation_bytes(model)
    # The final norm's fp32 input and bf16 output with the embedding's output (10h), and the
    # head's bf16 logits beside their gradient (4 bytes per vocabulary entry): the compiled
    # cross-entropy reads the logits without an fp32 copy.
    ends = 10 * model.hidden_size + 4 * model.vocab_size
    stored = tokens * (model.num_layers * per_layer + ends)
    # Checkpointing keeps each block's fp32 input and recomputes one block at a time.
    checkpointed = tokens * (model.num_layers * 4 * model.hidden_size + per_layer + ends)
    if processes > 1 and fsdp:
        # fp32 shards of weights, gradients and states; the root unit (embedding, head, final
        # norm) stays gathered in bf16 through the step, and two blocks are gathered at once
        # (the one running and the one prefetched), each with its bf16 and fp32 gradients
        # while they are reduce-scattered.
        block = block_parameters(model) + (trained // model.num_layers if lora else 0)
        gathered = params - model.num_layers * block + 2 * block
        trained_gathered = gathered if lora is None else 2 * trained // model.num_layers
        return MemoryEstimate(
            4 * params // processes + 2 * gathered,
            4 * trained // processes + 6 * trained_gathered,
            states // processes,
            stored,
            checkpointed,
        )
    return MemoryEstimate(6 * params, 4 * trained, states, stored, checkpointed)
