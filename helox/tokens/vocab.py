"""Helox's vocabulary contract, and `load_tokenizer`, the one door to every tokenizer.

The contract: every SentencePiece model that Helox trains reserves its special tokens at fixed
ids (`SPECIAL_IDS`). A model folder of another family brings its own tokenizer instead
(helox.tokens.folder_files), whose special ids its configs name.
"""

from __future__ import annotations

import os
from pathlib import Path

from helox.tokens.interface import Tokenizer

UNK, BOS, EOS, PAD = "<unk>", "<s>", "</s>", "<pad>"
CHAT_MARKERS = ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")
SPECIAL_IDS = {UNK: 0, BOS: 1, EOS: 2, PAD: 3} | {m: 4 + i for i, m in enumerate(CHAT_MARKERS)}

TokenizerSource = Tokenizer | str | os.PathLike  # a loaded tokenizer, or where to load one


def load_tokenizer(source: TokenizerSource) -> Tokenizer:
    """The tokenizer of a folder (its `tokenizer.json`, else its `tokenizer.model`) or of one
    such file. A SentencePiece model with Helox's special tokens at their ids is Helox's own;
    any other is a model folder's own, its special ids read from the folder's configs."""
    if isinstance(source, Tokenizer):
        return source
    from helox.tokens.folder_files import TokenizerFiles
    from helox.tokens.json_kind import JSON_FILE, JsonTokenizer
    from helox.tokens.sentencepiece_kinds import (
        SENTENCEPIECE_FILE,
        HeloxTokenizer,
        SentencePieceTokenizer,
        SentencePieceVocab,
        helox_chat_template,
        holds_helox_ids,
        read_sentencepiece,
    )

    path = Path(source)
    if path.is_dir():
        folder = path
        json_path, model_path = path / JSON_FILE, path / SENTENCEPIECE_FILE
    elif path.suffix == ".json":
        folder, json_path, model_path = path.parent, path, None
    else:
        folder, json_path, model_path = path.parent, None, path
    if json_path is not None and json_path.is_file():
        return JsonTokenizer(TokenizerFiles.read(folder))
    if model_path is None or not model_path.is_file():
        raise FileNotFoundError(
            f"{path}: no tokenizer: a model folder carries its tokenizer.json or SentencePiece "
            "tokenizer.model"
        )
    processor = read_sentencepiece(model_path)
    if holds_helox_ids(processor):
        return HeloxTokenizer(model_path, helox_chat_template(folder), processor)
    if model_path.name != SENTENCEPIECE_FILE:
        raise ValueError(
            f"{model_path}: a SentencePiece model without Helox's special ids must be a "
            f"folder's {SENTENCEPIECE_FILE}, beside the configs that name its special tokens"
        )
    return SentencePieceTokenizer(
        TokenizerFiles.read(folder), SentencePieceVocab(model_path, processor)
    )
