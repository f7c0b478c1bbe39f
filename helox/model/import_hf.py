"""A local Hugging Face folder of a supported family → a Helox `final/` folder (`helox import-hf`).

Llama, Mistral, Qwen2 and Qwen3 tensors already have `HeloxLM`'s names, so they load as
they are (cast to float32); what needs care is the config, which helox.model.families maps,
refusing by name each key Helox cannot compute the same way rather than approximating it.

The tokenizer is the folder's own (`tokenizer.json` or a SentencePiece `tokenizer.model`, its
special ids read from its configs: helox.tokens.vocab.load_tokenizer), carried into the new
folder with its configs and chat template as they are. It must load, and its vocabulary must
fit the embedding rows.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from safetensors import safe_open

from helox.common.config_files import load_mapping
from helox.common.io import sha256_file
from helox.model.config import ModelConfig
from helox.model.families import NotImportableError, from_hf_config
from helox.model.folder import save_final
from helox.model.network import HeloxLM, create_model_from_config
from helox.model.token_rows import check_vocabulary_fits
from helox.model.weight_files import TensorEntry, check_fits, folder_tensors
from helox.tokens.vocab import load_tokenizer

log = logging.getLogger(__name__)

# Tensors of older checkpoints that Helox recomputes instead of loading.
RECOMPUTED_SUFFIXES = ("rotary_emb.inv_freq",)


def source_tensors(folder: Path, config: ModelConfig) -> dict[str, TensorEntry]:
    """The tensors of `folder` that Helox loads, from the safetensors headers alone: without
    the recomputed ones, and without `lm_head.weight` where the embeddings are tied."""
    skipped = {"lm_head.weight"} if config.tie_word_embeddings else set()
    return {
        name: entry
        for name, entry in folder_tensors(folder).items()
        if name not in skipped and not name.endswith(RECOMPUTED_SUFFIXES)
    }


def check_tensor_shapes(config: ModelConfig, tensors: dict[str, TensorEntry], where: str) -> None:
    """Refuse, naming them, tensors that are missing, unexpected or misshapen for `config`;
    the expected shapes come from a model on the meta device, which holds no memory."""
    with torch.device("meta"):
        expected = {
            name: t.shape for name, t in create_model_from_config(config).state_dict().items()
        }
    if config.tie_word_embeddings:
        expected.pop("lm_head.weight")
    missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    misshapen = [
        f"{name} {list(tensors[name].shape)} (expected {list(shape)})"
        for name, shape in expected.items()
        if name in tensors and tensors[name].shape != tuple(shape)
    ]
    if missing or extra or misshapen:
        raise NotImportableError(
            f"{where}: tensors do not fit the config (missing {missing}, unexpected {extra}, "
            f"wrong shape {misshapen})"
        )


@torch.no_grad()
def load_source_tensors(model: HeloxLM, tensors: dict[str, TensorEntry]) -> None:
    """Copy each tensor into `model`'s own, one at a time, cast to float32."""
    targets = model.state_dict()
    for path in sorted({entry.file for entry in tensors.values()}):
        with safe_open(path, framework="pt") as file:
            for name in (name for name, entry in tensors.items() if entry.file == path):
                targets[name].copy_(file.get_tensor(name))


def import_hf_folder(source: str | os.PathLike, destination: str | os.PathLike) -> Path:
    """Convert the Hugging Face folder `source` into the Helox final folder `destination`.

    Everything is checked before a weight is read: the config, the tokenizer, the tensors'
    names and shapes, and that the weights fit memory (from the safetensors headers).
    """
    source, destination = Path(source), Path(destination)
    if not source.is_dir():
        raise NotImportableError(
            f"{source}: not a folder (a Hugging Face model folder holds "
            "config.json and its *.safetensors)"
        )
    where = str(source / "config.json")
    config = from_hf_config(load_mapping(where), where)
    tokenizer = load_tokenizer(source)
    check_vocabulary_fits(tokenizer, config.vocab_size, where)
    tensors = source_tensors(source, config)
    check_tensor_shapes(config, tensors, where)
    check_fits(source, tensors.values(), "cpu")
    model = create_model_from_config(config)
    load_source_tensors(model, tensors)
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
    log.info(
        "imported %s (%s, %d parameters) into %s",
        source,
        config.family,
        metrics["parameters"],
        destination,
    )
    return destination
