"""The self-contained model folder (`results/<stage>/final/`) that stages hand on.

A folder holds `model.safetensors`, `config.json`, `metrics.json` and its tokenizer's files
(helox.tokens.folder_files.TOKENIZER_FILES: Helox's `tokenizer.model` with the Hugging Face
tokenizer and generation configs it writes, or the files a model folder of another family
brought, carried verbatim); step checkpoints for resuming live apart, in
helox.train.checkpoint.

`HeloxLM` already uses Llama's parameter names, RoPE layout, RMSNorm arithmetic and
SwiGLU order, so the weights need no conversion: a folder only needs Llama's keys in
`config.json` and the tokenizer files transformers reads to load as `LlamaForCausalLM`.
Helox's own model config travels in the same `config.json` under the key "helox". A model
that Llama cannot express (LayerNorm, a GELU MLP, learned positions, QK-norm, logit
soft-capping) gets no Llama keys, and the reason is written where they would have been.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from helox.common.config_files import section_from_dict
from helox.common.distributed import DistributedEnv
from helox.common.io import atomic_path, fsync_dir, fsync_file, read_json, write_json
from helox.model.config import ModelConfig, head_dim, intermediate_size, kv_heads
from helox.model.network import HeloxLM, create_model_from_config
from helox.model.tensors import load_model_tensors, model_tensors
from helox.tokens.interface import Tokenizer
from helox.tokens.vocab import TokenizerSource, load_tokenizer

log = logging.getLogger(__name__)

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
HELOX_KEY = "helox"
# Stages whose folders hold a chat model: they get the chat template and stop at <|end|>.
CHAT_STAGES = frozenset({"sft", "dpo"})
NOT_LLAMA_KEY = "not_llama_because"


class NotLlamaError(ValueError):
    """The model uses a component that `LlamaForCausalLM` has no switch for."""


def llama_incompatibilities(config: ModelConfig) -> list[str]:
    """Each setting of `config` that a Hugging Face Llama cannot reproduce, with what it is."""
    problems = []
    if not config.use_rms_norm:
        problems.append("model.use_rms_norm is false (LayerNorm; Llama has RMSNorm)")
    if not config.use_swiglu:
        problems.append("model.use_swiglu is false (GELU MLP; Llama has SwiGLU)")
    if not config.use_rope_embeddings:
        problems.append(
            "model.use_rope_embeddings is false (learned positions; Llama has rotary ones)"
        )
    if config.qk_norm:
        problems.append("model.qk_norm is true (Llama does not normalise queries and keys)")
    if config.logit_softcap:
        problems.append("model.logit_softcap is set (Llama does not cap its logits)")
    return problems


def llama_config(config: ModelConfig, tokenizer: Tokenizer) -> dict[str, Any]:
    """Llama's `config.json` keys for `config` and the special ids of `tokenizer`;
    NotLlamaError names what Llama lacks."""
    problems = llama_incompatibilities(config)
    if problems:
        raise NotLlamaError("not expressible as LlamaForCausalLM: " + "; ".join(problems))
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "intermediate_size": intermediate_size(config),
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_attention_heads,
        "num_key_value_heads": kv_heads(config),
        "head_dim": head_dim(config),
        "hidden_act": "silu",
        "max_position_embeddings": config.max_position_embeddings,
        "rms_norm_eps": config.norm_eps,
        "rope_theta": config.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": config.rope_theta},
        "attention_bias": False,
        "mlp_bias": False,
        "attention_dropout": 0.0,
        "tie_word_embeddings": config.tie_word_embeddings,
        "initializer_range": config.initializer_range,
        "bos_token_id": tokenizer.bos,
        "eos_token_id": tokenizer.eos,
        "pad_token_id": tokenizer.pad,
        "torch_dtype": "float32",
        "use_cache": True,
    }


def folder_config(config: ModelConfig, tokenizer: Tokenizer) -> dict[str, Any]:
    """`config.json` of a final folder: Llama's keys where they apply, Helox's always."""
    helox = {HELOX_KEY: dataclasses.asdict(config)}
    try:
        return {**llama_config(config, tokenizer), **helox}
    except NotLlamaError as error:
        return {"architectures": ["HeloxLM"], NOT_LLAMA_KEY: str(error), **helox}


def model_config_fields(folder_config_json: dict[str, Any], where: str) -> dict[str, Any]:
    """The ModelConfig fields stored in a folder's `config.json`."""
    fields = folder_config_json.get(HELOX_KEY)
    if not isinstance(fields, dict):
        raise ValueError(
            f"{where}: no {HELOX_KEY!r} section; the folder was not written by this Helox "
            "version: rerun the stage that made it"
        )
    return fields


def save_final(
    folder: str | os.PathLike,
    model: HeloxLM,
    model_config: ModelConfig,
    tokenizer: TokenizerSource,
    metrics: dict,
) -> Path:
    """Write `model.safetensors`, `config.json`, `metrics.json` and the tokenizer's files
    (`tokenizer`: loaded, or the folder or file it is loaded from), atomically.

    The folder loads in transformers as `LlamaForCausalLM` when the model is expressible as
    one. Every process must call it; rank 0 alone writes.
    """
    folder = Path(folder)
    weights = model_tensors(model)
    if not DistributedEnv.from_environ().is_main:
        return folder
    tokenizer = load_tokenizer(tokenizer)
    config_json = folder_config(model_config, tokenizer)
    if NOT_LLAMA_KEY in config_json:
        log.warning("%s will not load in transformers: %s", folder, config_json[NOT_LLAMA_KEY])
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        save_file(weights, tmp / MODEL_FILE, metadata={"format": "pt"})
        write_json(tmp / CONFIG_FILE, config_json)
        tokenizer.write_files(tmp, chat=metrics.get("stage") in CHAT_STAGES)
        write_json(tmp / METRICS_FILE, metrics)
        for path in tmp.iterdir():
            fsync_file(path)
        fsync_dir(tmp)
    return folder


def load_final(
    folder: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[HeloxLM, ModelConfig]:
    """Rebuild the model saved by `save_final`, in eval mode on `device`."""
    folder = Path(folder)
    where = str(folder / CONFIG_FILE)
    fields = model_config_fields(read_json(folder / CONFIG_FILE), where)
    config = section_from_dict(ModelConfig, fields, where)
    model = create_model_from_config(config).to(device)
    load_model_tensors(model, folder / MODEL_FILE)
    return model.eval(), config
