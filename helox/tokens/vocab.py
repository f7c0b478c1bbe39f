"""Helox's vocabulary contract: the special tokens at fixed ids that every SentencePiece
model Helox trains or imports reserves, and loading a model that keeps them."""

from __future__ import annotations

import os

import sentencepiece as spm

UNK, BOS, EOS, PAD = "<unk>", "<s>", "</s>", "<pad>"
CHAT_MARKERS = ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")
SPECIAL_IDS = {UNK: 0, BOS: 1, EOS: 2, PAD: 3} | {m: 4 + i for i, m in enumerate(CHAT_MARKERS)}


def load_tokenizer(model_path: str | os.PathLike) -> spm.SentencePieceProcessor:
    """Load a Helox SentencePiece model, checking the fixed special-token ids."""
    processor = spm.SentencePieceProcessor(model_file=str(model_path))
    for piece, expected in SPECIAL_IDS.items():
        actual = processor.piece_to_id(piece)
        if actual != expected:
            raise ValueError(
                f"{model_path}: special token {piece} has id {actual}, Helox expects {expected}"
            )
    return processor
