"""Rows for tokens added to a model's tokenizer (Helox's chat markers on a base model that
brings no chat template).

Each new token's embedding row, and its row of the output head where the head is not tied to
the embedding, start as the mean of the rows of the tokens the tokenizer already had: a new
token starts as an average known one, neither a random outlier that derails the first steps
nor a zero the head could never predict. The matrices grow where the model has fewer rows
than the tokenizer now has ids (a model whose rows are padded past its vocabulary, as Qwen's
are, already has them: their rows are overwritten).
"""

from __future__ import annotations

import dataclasses
import logging
import os

import torch
from torch import nn

from helox.model.network import HeloxLM
from helox.tokens.interface import Tokenizer

log = logging.getLogger(__name__)


def check_vocabulary_fits(tokenizer: Tokenizer, rows: int, where: str | os.PathLike) -> None:
    """Refuse a tokenizer with more ids than the model (its config at `where`) has embedding
    rows, naming both files and numbers."""
    if tokenizer.vocab_size > rows:
        raise ValueError(
            f"{tokenizer.model_file} has {tokenizer.vocab_size} tokens but {where} gives the "
            f"model {rows} embedding rows (vocab_size)"
        )


def grown(weight: torch.Tensor, rows: int) -> torch.Tensor:
    """`weight` with zero rows appended up to `rows`."""
    extra = weight.new_zeros(rows - weight.size(0), weight.size(1))
    return torch.cat([weight.detach(), extra]) if rows > weight.size(0) else weight.detach()


@torch.no_grad()
def add_token_rows(model: HeloxLM, new_ids: list[int], known: int) -> HeloxLM:
    """Give `model` rows for `new_ids`, each the mean of the rows of ids 0..known-1; grow
    the embedding and head to hold them. Returns `model`, its config updated."""
    rows = max(model.config.vocab_size, max(new_ids) + 1)
    embedding = grown(model.model.embed_tokens.weight, rows)
    embedding[new_ids] = embedding[:known].mean(dim=0)
    model.model.embed_tokens = nn.Embedding.from_pretrained(embedding.clone(), freeze=False)
    if model.config.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    else:
        head = grown(model.lm_head.weight, rows)
        head[new_ids] = head[:known].mean(dim=0)
        model.lm_head = nn.Linear(head.size(1), rows, bias=False, device=head.device)
        model.lm_head.weight = nn.Parameter(head.clone())
    model.config = dataclasses.replace(model.config, vocab_size=rows)
    log.info(
        "ids %d-%d: embedding%s rows set to the mean of the rows of the %d known tokens; "
        "the model now has %d rows",
        new_ids[0],
        new_ids[-1],
        "" if model.config.tie_word_embeddings else " and head",
        known,
        rows,
    )
    return model
