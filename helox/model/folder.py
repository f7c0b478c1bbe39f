"""The self-contained model folder (`results/<stage>/final/`) that stages hand on.

A folder holds `model.safetensors`, `config.json`, `metrics.json` and its tokenizer's files
(helox.tokens.folder_files.TOKENIZER_FILES: Helox's `tokenizer.model` with the Hugging Face
tokenizer and generation configs it writes, or the files a model folder of another family
brought, carried verbatim); a model trained with LoRA adapters is saved with them merged into
its weights, and the adapter alone in PEFT's format beside them (`adapter/`,
helox.model.peft_adapter). Step checkpoints for resuming live apart, in
helox.train.checkpoint.

`HeloxLM` already uses the parameter names, RoPE layout, RMSNorm arithmetic and SwiGLU
order of Llama, Mistral, Qwen2 and Qwen3, so the weights need no conversion: a folder only
needs its family's keys in `config.json` (helox.model.families; `model.family`, Llama unless
imported from another) and the tokenizer files transformers reads. Helox's own model config,
the family included, travels in the same `config.json` under the key "helox", so every
later stage writes the same family. A model its family cannot express (LayerNorm, a GELU
MLP, learned positions, logit soft-capping, QK-norm outside Qwen3, ...) gets no
transformers keys, and the reason is written where they would have been.
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
from helox.model.config import ModelConfig
from helox.model.families import NotExportableError, to_hf_config
from helox.model.lora import lora_of, merge_adapters
from helox.model.network import HeloxLM, create_model_from_config
from helox.model.peft_adapter import ADAPTER_DIR, write_adapter
from helox.model.tensors import load_model_tensors, model_tensors
from helox.model.weight_files import check_fits, read_header
from helox.tokens.interface import Tokenizer
from helox.tokens.vocab import TokenizerSource, load_tokenizer

log = logging.getLogger(__name__)

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
HELOX_KEY = "helox"
# Stages whose folders hold a chat model: they get the chat template and stop at <|end|>.
CHAT_STAGES = frozenset({"sft", "dpo"})
NOT_HF_KEY = "not_transformers_because"


def special_token_ids(tokenizer: Tokenizer) -> dict[str, int | None]:
    """config.json's special token ids, which transformers reads beside the tokenizer's files."""
    return {
        "bos_token_id": tokenizer.bos,
        "eos_token_id": tokenizer.eos,
        "pad_token_id": tokenizer.pad,
    }


def folder_config(config: ModelConfig, tokenizer: Tokenizer) -> dict[str, Any]:
    """`config.json` of a final folder: its family's keys where they apply, Helox's always."""
    helox = {HELOX_KEY: dataclasses.asdict(config)}
    try:
        return {**to_hf_config(config), **special_token_ids(tokenizer), **helox}
    except NotExportableError as error:
        return {"architectures": ["HeloxLM"], NOT_HF_KEY: str(error), **helox}


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
    adapter_base: str | os.PathLike | None = None,
) -> Path:
    """Write `model.safetensors`, `config.json`, `metrics.json` and the tokenizer's files
    (`tokenizer`: loaded, or the folder or file it is loaded from), atomically; for a model
    with LoRA adapters, the weights with the adapters merged, and the adapter on
    `adapter_base` (the folder it was trained on) in `adapter/`.

    The folder loads in transformers as its family's class (`LlamaForCausalLM` unless
    imported from another) when the model is expressible as one. Every process must call
    it; rank 0 alone writes.
    """
    folder = Path(folder)
    weights, lora = model_tensors(model), lora_of(model)
    if not DistributedEnv.from_environ().is_main:
        return folder
    if lora is not None:
        weights, factors = merge_adapters(weights, lora.scale)
    tokenizer = load_tokenizer(tokenizer)
    config_json = folder_config(model_config, tokenizer)
    if NOT_HF_KEY in config_json:
        log.warning("%s will not load in transformers: %s", folder, config_json[NOT_HF_KEY])
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        save_file(weights, tmp / MODEL_FILE, metadata={"format": "pt"})
        write_json(tmp / CONFIG_FILE, config_json)
        tokenizer.write_files(tmp, chat=metrics.get("stage") in CHAT_STAGES)
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
    """Rebuild the model saved by `save_final`, in eval mode on `device`; refused before
    its weights are read where they would not fit memory."""
    folder = Path(folder)
    where = str(folder / CONFIG_FILE)
    fields = model_config_fields(read_json(folder / CONFIG_FILE), where)
    config = section_from_dict(ModelConfig, fields, where)
    check_fits(folder, read_header(folder / MODEL_FILE).values(), device)
    model = create_model_from_config(config).to(device)
    load_model_tensors(model, folder / MODEL_FILE)
    return model.eval(), config
