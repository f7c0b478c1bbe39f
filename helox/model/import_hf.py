"""A local Hugging Face `LlamaForCausalLM` folder → a Helox `final/` folder (`helox import-hf`).

`HeloxLM` uses Llama's parameter names, RoPE layout, RMSNorm and SwiGLU (helox.model.folder), so
the tensors load as they are; what needs care is the config: each key of the source's
`config.json` that Helox cannot reproduce is refused by name rather than approximated.

The tokenizer is the folder's own (`tokenizer.json` or a SentencePiece `tokenizer.model`, its
special ids read from its configs: helox.tokens.vocab.load_tokenizer), carried into the new
folder with its configs and chat template as they are. It must load, and its vocabulary must
fit the embedding rows.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from helox.common.io import read_json, sha256_file
from helox.model.config import ModelConfig
from helox.model.folder import save_final
from helox.model.network import HeloxLM, create_model_from_config
from helox.model.token_rows import check_vocabulary_fits
from helox.tokens.vocab import load_tokenizer

log = logging.getLogger(__name__)

# Keys whose value must be exactly this (or absent) for Helox to compute the same function.
REQUIRED_VALUES: dict[str, Any] = {
    "hidden_act": "silu",
    "attention_bias": False,
    "mlp_bias": False,
    "rope_scaling": None,
    "pretraining_tp": 1,
}
# Tensors of older checkpoints that Helox recomputes instead of loading.
RECOMPUTED_SUFFIXES = ("rotary_emb.inv_freq",)


class NotImportableError(ValueError):
    """The source folder uses something a Helox model cannot express."""


def model_config_from_llama(config: dict[str, Any], where: str) -> ModelConfig:
    """The Helox ModelConfig computing what the Llama `config` does; NotImportableError
    names each key that stands in the way."""
    problems = []
    if "LlamaForCausalLM" not in config.get("architectures", ["LlamaForCausalLM"]):
        problems.append(f"architectures {config.get('architectures')} (expected LlamaForCausalLM)")
    if config.get("model_type", "llama") != "llama":
        problems.append(f"model_type {config.get('model_type')!r} (expected 'llama')")
    for key, required in REQUIRED_VALUES.items():
        if config.get(key, required) != required:
            problems.append(f"{key} {config[key]!r} (Helox supports only {required!r})")
    rope = config.get("rope_parameters") or {}
    if rope.get("rope_type", "default") != "default":
        problems.append(f"rope_parameters.rope_type {rope['rope_type']!r} (only 'default')")
    for key in sorted(set(rope) - {"rope_type", "rope_theta"}):
        problems.append(f"rope_parameters.{key} (rope scaling is not supported)")
    hidden, heads = config.get("hidden_size"), config.get("num_attention_heads")
    if config.get("head_dim") not in (None, hidden // heads if hidden and heads else None):
        problems.append(
            f"head_dim {config['head_dim']} (Helox uses hidden_size / num_attention_heads)"
        )
    if problems:
        raise NotImportableError(f"{where}: cannot import as a Helox model: " + "; ".join(problems))
    return ModelConfig(
        vocab_size=config["vocab_size"],
        hidden_size=hidden,
        num_layers=config["num_hidden_layers"],
        num_attention_heads=heads,
        num_key_value_heads=config.get("num_key_value_heads") or heads,
        intermediate_size=config["intermediate_size"],
        max_position_embeddings=config.get("max_position_embeddings", 2048),
        rope_theta=float(rope.get("rope_theta", config.get("rope_theta", 10000.0))),
        norm_eps=float(config.get("rms_norm_eps", 1e-6)),
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        initializer_range=float(config.get("initializer_range", 0.02)),
    )


def read_llama_tensors(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of `model.safetensors` or of the shards its index lists, as float32."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(read_json(index)["weight_map"].values()))
    elif (folder / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        raise FileNotFoundError(
            f"{folder}: no model.safetensors (or model.safetensors.index.json); Helox never "
            "loads pickled weights such as pytorch_model.bin"
        )
    tensors = {}
    for name in files:
        tensors.update(load_file(folder / name))
    return {
        name: tensor.float()
        for name, tensor in tensors.items()
        if not name.endswith(RECOMPUTED_SUFFIXES)
    }


def import_llama(source: str | os.PathLike, destination: str | os.PathLike) -> Path:
    """Convert the Llama folder `source` into the Helox final folder `destination`."""
    source, destination = Path(source), Path(destination)
    where = str(source / "config.json")
    config = model_config_from_llama(read_json(source / "config.json"), where)
    tokenizer = load_tokenizer(source)
    check_vocabulary_fits(tokenizer, config.vocab_size, where)
    model = create_model_from_config(config)
    load_llama_tensors(model, read_llama_tensors(source), str(source))
    metrics = {
        "stage": "import",
        "source": str(source.resolve()),
        "parameters": model.num_parameters(),
        "lineage": {
            "imported_sha256": {
                p.name: sha256_file(p) for p in sorted(source.glob("*.safetensors"))
            },
            "tokenizer_sha256": tokenizer.sha256,
        },
    }
    save_final(destination, model, config, tokenizer, metrics)
    log.info("imported %s (%d parameters) into %s", source, metrics["parameters"], destination)
    return destination


def load_llama_tensors(model: HeloxLM, tensors: dict[str, torch.Tensor], where: str) -> None:
    """Load Llama-named tensors into `model`, naming any that are missing, extra or misshapen."""
    expected = model.state_dict()
    if model.config.tie_word_embeddings:
        tensors = {name: t for name, t in tensors.items() if name != "lm_head.weight"}
        expected.pop("lm_head.weight")
    missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    misshapen = [n for n in expected if n in tensors and tensors[n].shape != expected[n].shape]
    if missing or extra or misshapen:
        raise NotImportableError(
            f"{where}: tensors do not fit the config (missing {missing}, unexpected {extra}, "
            f"wrong shape {misshapen})"
        )
    model.load_state_dict(tensors, strict=not model.config.tie_word_embeddings)
