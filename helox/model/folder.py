"""The self-contained model folder (`results/<stage>/final/`) that stages hand on.

A folder holds `model.safetensors`, `config.json`, `tokenizer.model`, `metrics.json` and
the Hugging Face tokenizer and generation configs; step checkpoints for resuming live
apart, in helox.train.checkpoint.

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
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from helox.common.config_files import section_from_dict
from helox.common.distributed import DistributedEnv
from helox.common.io import atomic_path, fsync_dir, fsync_file, read_json, write_json
from helox.model.config import ModelConfig
from helox.model.families import NotExportableError, to_hf_config
from helox.model.network import HeloxLM, create_model_from_config
from helox.model.tensors import load_model_tensors, model_tensors
from helox.model.weight_files import check_fits, read_header
from helox.tokens.vocab import BOS, CHAT_MARKERS, EOS, PAD, SPECIAL_IDS, UNK

log = logging.getLogger(__name__)

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.model"
METRICS_FILE = "metrics.json"
HELOX_KEY = "helox"
# Stages whose folders hold a chat model: they get the chat template and stop at <|end|>.
CHAT_STAGES = frozenset({"sft", "dpo"})
NOT_HF_KEY = "not_transformers_because"

# The chat template of helox.tokens.chat in Jinja, for transformers' `apply_chat_template`.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


# config.json's special token ids, which transformers reads beside the tokenizer's files.
SPECIAL_TOKEN_IDS = {
    "bos_token_id": SPECIAL_IDS[BOS],
    "eos_token_id": SPECIAL_IDS[EOS],
    "pad_token_id": SPECIAL_IDS[PAD],
}


def folder_config(config: ModelConfig) -> dict[str, Any]:
    """`config.json` of a final folder: its family's keys where they apply, Helox's always."""
    helox = {HELOX_KEY: dataclasses.asdict(config)}
    try:
        return {**to_hf_config(config), **SPECIAL_TOKEN_IDS, **helox}
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
) -> Path:
    """Write `model.safetensors`, `config.json`, `tokenizer.model`, `metrics.json` and the
    Hugging Face tokenizer and generation configs, atomically.

    The folder loads in transformers as its family's class (`LlamaForCausalLM` unless
    imported from another) when the model is expressible as one. Every process must call
    it; rank 0 alone writes.
    """
    folder = Path(folder)
    weights = model_tensors(model)
    if not DistributedEnv.from_environ().is_main:
        return folder
    config_json = folder_config(model_config)
    if NOT_HF_KEY in config_json:
        log.warning("%s will not load in transformers: %s", folder, config_json[NOT_HF_KEY])
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
