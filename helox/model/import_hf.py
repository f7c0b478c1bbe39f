"""A local Hugging Face folder of a supported family → a Helox `final/` folder (`helox import-hf`).

Llama, Mistral, Qwen2 and Qwen3 tensors already have `HeloxLM`'s names, so they load as
they are (cast to float32); what needs care is the config, which helox.model.families maps,
refusing by name each key Helox cannot compute the same way rather than approximating it.

The tokenizer must be a SentencePiece `tokenizer.model` holding every Helox special token
at its fixed id (helox.tokens.vocab.SPECIAL_IDS: `<unk>` 0, `<s>` 1, `</s>` 2, `<pad>` 3, the
chat markers 4-7), as a tokenizer trained by Helox does: sharding, the chat template and
generation address them by id. Any other is refused, naming each missing piece; remapping
ids would change the vocabulary that the imported weights were trained with.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import sentencepiece as spm
import torch
from safetensors import safe_open

from helox.common.config_files import load_mapping
from helox.common.io import atomic_path, sha256_file, write_json
from helox.model.config import ModelConfig
from helox.model.families import NotImportableError, from_hf_config
from helox.model.folder import save_final
from helox.model.network import HeloxLM, create_model_from_config
from helox.model.weight_files import TensorEntry, check_fits, folder_tensors
from helox.tokens.tokenizer import evaluate_tokenizer
from helox.tokens.vocab import SPECIAL_IDS

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


def check_special_tokens(tokenizer_path: Path) -> spm.SentencePieceProcessor:
    """The SentencePiece model at `tokenizer_path`, refused (naming each piece) unless it has
    every Helox special token at its fixed id."""
    processor = spm.SentencePieceProcessor(model_file=str(tokenizer_path))
    wrong = [
        f"{piece} at id {expected} (it has {processor.piece_to_id(piece)})"
        for piece, expected in SPECIAL_IDS.items()
        if processor.piece_to_id(piece) != expected
    ]
    if wrong:
        raise NotImportableError(
            f"{tokenizer_path}: Helox addresses its special tokens by fixed ids, and this "
            f"tokenizer lacks {', '.join(wrong)}; remapping them would change the vocabulary "
            "the weights were trained with"
        )
    return processor


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
    tokenizer_path = source / "tokenizer.model"
    if not tokenizer_path.is_file():
        raise FileNotFoundError(f"{source}: no SentencePiece tokenizer.model")
    processor = check_special_tokens(tokenizer_path)
    if len(processor) > config.vocab_size:
        raise NotImportableError(
            f"{tokenizer_path} has {len(processor)} pieces but {where} a vocab_size of "
            f"{config.vocab_size}"
        )
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
            "tokenizer_sha256": sha256_file(tokenizer_path),
        },
    }
    save_final(destination, model, config, tokenizer_path, metrics)
    log.info(
        "imported %s (%s, %d parameters) into %s",
        source,
        config.family,
        metrics["parameters"],
        destination,
    )
    return destination


def adopt_tokenizer(
    folder: str | os.PathLike,
    input_paths: list[str | os.PathLike],
    model_path: str | os.PathLike,
    eval_path: str | os.PathLike,
    eval_docs: int,
) -> dict:
    """Stand an imported folder's tokenizer in for the tokenizer stage: copy it to
    `model_path` and evaluate it on the corpus (`eval_path`) as that stage does."""
    with atomic_path(model_path) as tmp:
        shutil.copyfile(Path(folder) / "tokenizer.model", tmp)
    report = evaluate_tokenizer(input_paths, model_path, eval_docs)
    write_json(eval_path, report)
    log.info("imported tokenizer eval: %s", report["overall"])
    return report
