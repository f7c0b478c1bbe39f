"""Preference data for DPO: reading pairs, deriving default ones, rendering and batching.

A record is the conversation so far and two answers to it: `{"prompt": str | "messages":
[...], "chosen": str, "rejected": str}`, or one of the public shapes that
helox.tune.formats reads (TRL and UltraFeedback message lists, Anthropic HH
transcripts). Both answers are rendered with the chat format and mask of SFT
(helox.tune.sft_data), and a batch lays each pair's chosen and rejected sequences side by
side, packed into rows as SFT packs its conversations.

The default pairs are derived from SFT's instruction pairs (functions of the standard
library): the chosen answer is the real function; the rejected one keeps its signature
but carries another real function's docstring and code, so it looks right, and neither
says nor does what was asked.
"""

from __future__ import annotations

import ast
import hashlib
import logging
import os
import textwrap
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from helox.common.io import JsonlWriter
from helox.tokens.chat import ChatFormat, RenderedChat
from helox.tune import formats as dataset_formats
from helox.tune.sft_data import (
    JsonlExamples,
    TuningBatches,
    collate_packed,
    cut_to,
    first_fit_rows,
    held_out_flags,
    read_jsonl_examples,
    render_examples,
    warn_cut,
)

log = logging.getLogger(__name__)


@dataclass
class PreferencePair:
    """The conversation before the answer, and a better and a worse answer to it."""

    prompt: list[dict[str, str]]
    chosen: str
    rejected: str

    def conversation(self, answer: str) -> list[dict]:
        """The prompt and `answer`, of which only `answer` is trained on."""
        context = [m | {"weight": 0} if m["role"] == "assistant" else m for m in self.prompt]
        return [*context, {"role": "assistant", "content": answer}]


@dataclass
class EncodedPair:
    """Both answers rendered; `reference` holds their summed response log-probabilities
    under the frozen reference model once computed."""

    chosen: RenderedChat
    rejected: RenderedChat
    reference: tuple[float, float] | None = None


def parse_preference(record: object) -> PreferencePair:
    """One preference record in any format of helox.tune.formats; raises ValueError
    saying what is wrong."""
    return PreferencePair(*dataset_formats.parse_preference(record))


def read_preference_data(path: str | os.PathLike) -> JsonlExamples[PreferencePair]:
    """Read preference pairs, skipping (and counting, with file and line) unusable lines."""
    return read_jsonl_examples(path, parse_preference, "preference pairs")


def split_pairs(
    pairs: list[PreferencePair], seed: int, val_fraction: float
) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """(train, held out), decided by SFT's seeded hash of the prompt and chosen answer, so
    with equal seed and fraction DPO holds out the conversations that SFT held out."""
    chosen = [[*p.prompt, {"role": "assistant", "content": p.chosen}] for p in pairs]
    held_out = held_out_flags(chosen, seed, val_fraction)
    train = [p for p, v in zip(pairs, held_out, strict=True) if not v]
    return train, [p for p, v in zip(pairs, held_out, strict=True) if v]


def encode_pairs(
    pairs: list[PreferencePair],
    chat: ChatFormat,
    seq_len: int,
    skipped: Counter | None = None,
) -> list[EncodedPair]:
    """Render both answers in `chat`'s template, cut each to seq_len + 1 tokens, and drop
    pairs that the template refuses or the cut left without a response token or made
    identical, counting them in `skipped` when given."""
    encoded, cut = [], 0
    for pair in pairs:
        answers = [
            render_examples(pair.conversation(answer), chat, skipped)
            for answer in (pair.chosen, pair.rejected)
        ]
        if not all(answers):
            continue
        (chosen,), (rejected,) = answers
        cut += max(len(chosen.ids), len(rejected.ids)) > seq_len + 1
        chosen, rejected = cut_to(chosen, seq_len), cut_to(rejected, seq_len)
        if not (any(chosen.trained[1:]) and any(rejected.trained[1:])):
            reason = f"an answer has no token within seq_len ({seq_len} tokens)"
        elif chosen.ids == rejected.ids:
            reason = f"the answers differ only after seq_len ({seq_len} tokens)"
        else:
            encoded.append(EncodedPair(chosen, rejected))
            continue
        if skipped is not None:
            skipped[reason] += 1
    warn_cut(cut, len(pairs), seq_len, len(pairs) - len(encoded))
    return encoded


def collate_pairs(
    pairs: list[EncodedPair], pack_width: int | None, pad_id: int
) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """Sequences chosen₀, rejected₀, chosen₁, ... as packed rows (first fit into rows of
    `pack_width` slots) or one to a row; `sequence_ids` numbers each slot's sequence (-1 on
    padding) and `reference_logps` holds their reference log-probabilities when known."""
    sequences = [s for pair in pairs for s in (pair.chosen, pair.rejected)]
    lengths = [len(s.ids) - 1 for s in sequences]
    if pack_width is None:
        rows, width = [[i] for i in range(len(sequences))], max(lengths)
    else:
        rows, width = first_fit_rows(lengths, pack_width), pack_width
    rows_of_sequences = [[sequences[i] for i in row] for row in rows]
    inputs, labels, extra = collate_packed(rows_of_sequences, width, pad_id)
    sequence_of = np.zeros((len(rows), max(len(row) for row in rows)), dtype=np.int64)
    for r, row in enumerate(rows):
        sequence_of[r, : len(row)] = row
    segments = extra["segment_ids"].numpy()
    sequence_ids = np.take_along_axis(sequence_of, np.maximum(segments, 0), axis=1)
    extra["sequence_ids"] = torch.from_numpy(np.where(segments >= 0, sequence_ids, -1))
    if all(pair.reference is not None for pair in pairs):
        extra["reference_logps"] = torch.tensor(
            [logp for pair in pairs for logp in pair.reference], dtype=torch.float32
        )
    return inputs, labels, extra


class PreferenceBatches(TuningBatches[EncodedPair, int]):
    """Endless batches of `batch_size` pairs, each epoch's pairs shuffled. With `pack_width`
    the batch's sequences are first-fit into rows."""

    ITEMS = "preference pairs"
    SEQUENCE = "answer"

    def slots(self, item: EncodedPair) -> int:
        return max(len(item.chosen.ids), len(item.rejected.ids)) - 1

    def order_units(self) -> list[int]:
        return [int(i) for i in self.permutation(len(self.items))]

    def __next__(self) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        pairs = [self.items[i] for i in self.next_units()]
        return collate_pairs(pairs, self.pack_width, self.pad_id)


def eval_pair_batches(
    pairs: list[EncodedPair], batch_size: int, pad_id: int, max_batches: int | None = None
):
    """The held-out pairs in file order, `batch_size` at a time, one sequence to a row."""
    end = len(pairs) if max_batches is None else min(len(pairs), batch_size * max_batches)
    for start in range(0, end, batch_size):
        yield collate_pairs(pairs[start : start + batch_size], None, pad_id)


# ---------------------------------------------------------------------------- default pairs


def derive_preference_pairs(
    instruction_path: str | os.PathLike, output_path: str | os.PathLike, max_pairs: int, seed: int
) -> int:
    """Write up to `max_pairs` {"prompt", "chosen", "rejected", "source"} lines from SFT's
    instruction pairs whose responses are Python functions; return how many.

    The functions, in a seeded order, pair up: the first of each two is the chosen answer,
    and its body (docstring and statements) is replaced by the second's for the rejected
    one, so no text is chosen in one pair and rejected in another. Pairs whose swap does
    not parse are left out.
    """
    examples = read_jsonl_examples(instruction_path, _function_pair, "Python function pairs")
    functions = [f for f in examples.items if f is not None]
    order = sorted(range(len(functions)), key=lambda i: _seeded_key(seed, functions[i][1]))
    written = 0
    with JsonlWriter(output_path) as writer:
        for index, donor_index in zip(order[0::2], order[1::2], strict=False):
            if written == max_pairs:
                break
            instruction, chosen, source = functions[index]
            donor = functions[donor_index][1]
            rejected = swap_body(chosen, donor)
            if rejected is None:
                continue
            record = {"prompt": instruction, "chosen": chosen, "rejected": rejected}
            writer.write({**record, "source": source})
            written += 1
    if not written:
        raise ValueError(f"{instruction_path}: no pair's response is a function to swap")
    log.info("derived %d preference pairs from %s into %s", written, instruction_path, output_path)
    return written


def _function_pair(record: object) -> tuple[str, str, str] | None:
    """(instruction, response, source) of an SFT line whose response is one function."""
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    instruction, response = record.get("instruction"), record.get("response")
    if not isinstance(instruction, str) or not isinstance(response, str):
        raise ValueError('needs string "instruction" and "response" fields')
    if _only_function(response) is None:
        return None
    return instruction, response, str(record.get("source", ""))


def _seeded_key(seed: int, text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), key=str(seed).encode()).digest()


def _only_function(source: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    """The function that `source` consists of, or None."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    if len(tree.body) != 1:
        return None
    node = tree.body[0]
    return node if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) else None


def swap_body(function: str, donor: str) -> str | None:
    """`function`'s decorators and signature over `donor`'s body (docstring and statements),
    re-indented; None when either is not one function, or the result is not valid Python
    or equals `function`."""
    node, donor_node = _only_function(function), _only_function(donor)
    if node is None or donor_node is None:
        return None
    first = donor_node.body[0]
    start = min([first.lineno] + [d.lineno for d in getattr(first, "decorator_list", [])])
    indent = " " * node.body[0].col_offset
    donor_body = "\n".join(donor.split("\n")[start - 1 :])
    body = textwrap.indent(textwrap.dedent(donor_body), indent)
    swapped = "\n".join([*function.split("\n")[: node.body[0].lineno - 1], body])
    if swapped == function or _only_function(swapped) is None:
        return None
    return swapped
