"""The self-contained model folder (`results/<stage>/final/`) that stages hand on.

A folder holds `model.safetensors`, `config.json`, `tokenizer.model`, `metrics.json` and
the Hugging Face tokenizer and generation configs; a model trained with LoRA adapters is
saved with them merged into its weights, and the adapter alone in PEFT's format beside them
(`adapter/`, helox.model.peft_adapter). Step checkpoints for resuming live apart, in
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
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from helox.common.config_files import section_from_dict
from helox.common.distributed import DistributedEnv
from helox.common.io import atomic_path, fsync_dir, fsync_file, read_json, write_json
from helox.model.config import ModelConfig, head_dim, intermediate_size, kv_heads
from helox.model.lora import lora_of, merge_adapters
from helox.model.network import HeloxLM, create_model_from_config
from helox.model.peft_adapter import ADAPTER_DIR, write_adapter
from helox.model.tensors import load_model_tensors, model_tensors
from helox.tokens.vocab import BOS, CHAT_MARKERS, EOS, PAD, SPECIAL_IDS, UNK

log = logging.getLogger(__name__)

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.model"
METRICS_FILE = "metrics.json"
HELOX_KEY = "helox"
# Stages whose folders hold a chat model: they get the chat template and stop at <|end|>.
CHAT_STAGES = frozenset({"sft", "dpo"})
NOT_LLAMA_KEY = "not_llama_because"

# The chat template of helox.tokens.chat in Jinja, for transformers' `apply_chat_template`.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


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


def llama_config(config: ModelConfig) -> dict[str, Any]:
    """Llama's `config.json` keys for `config`; NotLlamaError names what Llama lacks."""
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
        "bos_token_id": SPECIAL_IDS[BOS],
        "eos_token_id": SPECIAL_IDS[EOS],
        "pad_token_id": SPECIAL_IDS[PAD],
        "torch_dtype": "float32",
        "use_cache": True,
    }


def folder_config(config: ModelConfig) -> dict[str, Any]:
    """`config.json` of a final folder: Llama's keys where they apply, Helox's always."""
    helox = {HELOX_KEY: dataclasses.asdict(config)}
    try:
        return {**llama_config(config), **helox}
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


def tokenizer_files(chat: bool) -> dict[str, dict[str, Any]]:
    """`tokenizer_config.json` and `generation_config.json` for the folder's `tokenizer.model`.

    A chat model stops at `<|end|>` as well as at `</s>`, and carries the chat template.
    """
    stop_ids = [SPECIAL_IDS[EOS], SPECIAL_IDS["<|end|>"]] if chat else SPECIAL_IDS[EOS]
    tokenizer_config: dict[str, Any] = {
        "tokenizer_class": "LlamaTokenizer",
        "unk_token": UNK,
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": PAD,
        "additional_special_tokens": list(CHAT_MARKERS),
        "add_bos_token": False,
        "add_eos_token": False,
        "add_prefix_space": False,
        "legacy": False,
        "clean_up_tokenization_spaces": False,
    }
    if chat:
        tokenizer_config["chat_template"] = CHAT_TEMPLATE
    generation_config = {
        "bos_token_id": SPECIAL_IDS[BOS],
        "eos_token_id": stop_ids,
        "pad_token_id": SPECIAL_IDS[PAD],
    }
    return {
        "tokenizer_config.json": tokenizer_config,
        "generation_config.json": generation_config,
    }


def save_final(
    folder: str | os.PathLike,
    model: HeloxLM,
    model_config: ModelConfig,
    tokenizer_path: str | os.PathLike,
    metrics: dict,
    adapter_base: str | os.PathLike | None = None,
) -> Path:
    """Write `model.safetensors`, `config.json`, `tokenizer.model`, `metrics.json` and the
    Hugging Face tokenizer and generation configs, atomically; for a model with LoRA
    adapters, the weights with the adapters merged, and the adapter on `adapter_base` (the
    folder it was trained on) in `adapter/`.

    The folder loads in transformers as `LlamaForCausalLM` when the model is expressible as
    one. Every process must call it; rank 0 alone writes.
    """
    folder = Path(folder)
    weights, lora = model_tensors(model), lora_of(model)
    if not DistributedEnv.from_environ().is_main:
        return folder
    if lora is not None:
        weights, factors = merge_adapters(weights, lora.scale)
    config_json = folder_config(model_config)
    if NOT_LLAMA_KEY in config_json:
        log.warning("%s will not load in transformers: %s", folder, config_json[NOT_LLAMA_KEY])
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        save_file(weights, tmp / MODEL_FILE, metadata={"format": "pt"})
        write_json(tmp / CONFIG_FILE, config_json)
        shutil.copyfile(tokenizer_path, tmp / TOKENIZER_FILE)
        for name, content in tokenizer_files(chat=metrics.get("stage") in CHAT_STAGES).items():
            write_json(tmp / name, content)
        write_json(tmp / METRICS_FILE, metrics)
        for path in tmp.iterdir():
            fsync_file(path)
        if lora is not None:
            base = str(Path(adapter_base).resolve()) if adapter_base else None
            write_adapter(tmp / ADAPTER_DIR, factors, lora, base)
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
