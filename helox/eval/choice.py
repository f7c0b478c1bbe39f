"""Few-shot multiple-choice (cloze) scoring, CORE-style, over JSONL tasks.

A task file holds one `{"context": str, "choices": [str, ...], "gold": int}` a line. Each
choice is scored by the summed log-likelihood of its tokens given a prompt: `shots` other
examples of the task (drawn with a seed), each its context followed by its gold choice,
separated by blank lines, then the question's context. The choice is appended to the context
as it is, so any separating space or newline belongs at the end of the context or the start of
the choices.

Every stage's model is scored on raw text, the way pretraining saw its documents: no chat
template, and a BOS token only where the model's tokenizer puts one before every text (Llama
3), so the numbers of pretrain, SFT and later stages compare.

The choice's tokens are found as lm-evaluation-harness finds them: whitespace ending the
prompt moves to the choice, the whole text is encoded, and the tokens past those of the
stripped prompt are the choice's. `lm_eval` with `doc_to_text: "{{context}}"` and
`target_delimiter: ""` therefore scores the very same tokens (tests/test_lm_eval.py).
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from helox.model.attention import KVCache
from helox.model.config import sequence_limit
from helox.model.device import DeviceManager
from helox.model.folder import load_final
from helox.model.network import IGNORE_INDEX, HeloxLM
from helox.tokens.interface import Tokenizer
from helox.tokens.vocab import load_tokenizer

SHOT_SEPARATOR = "\n\n"


class TaskFormatError(ValueError):
    """A task file that does not hold valid multiple-choice examples."""


@dataclass(frozen=True)
class ChoiceExample:
    context: str
    choices: list[str]
    gold: int


def parse_example(record: object, where: str) -> ChoiceExample:
    """Check one decoded JSONL record; errors start with `where` (file:line)."""
    if not isinstance(record, dict):
        raise TaskFormatError(f"{where}: expected a JSON object, got {type(record).__name__}")
    for key in ("context", "choices", "gold"):
        if key not in record:
            raise TaskFormatError(f"{where}: missing field {key!r}")
    context, choices, gold = record["context"], record["choices"], record["gold"]
    if not isinstance(context, str):
        raise TaskFormatError(f"{where}: 'context' must be a string, got {type(context).__name__}")
    if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
        raise TaskFormatError(f"{where}: 'choices' must be a list of strings")
    if len(choices) < 2:
        raise TaskFormatError(f"{where}: 'choices' needs at least 2 entries, got {len(choices)}")
    if empty := [index for index, choice in enumerate(choices) if not choice]:
        raise TaskFormatError(f"{where}: choice {empty[0]} is an empty string")
    if not isinstance(gold, int) or isinstance(gold, bool):
        raise TaskFormatError(f"{where}: 'gold' must be an integer, got {type(gold).__name__}")
    if not 0 <= gold < len(choices):
        raise TaskFormatError(
            f"{where}: 'gold' is {gold}, outside the {len(choices)} choices (0..{len(choices) - 1})"
        )
    return ChoiceExample(context, choices, gold)


def read_choice_task(path: str | os.PathLike) -> list[ChoiceExample]:
    """Every example of a JSONL task file; blank lines are skipped, anything else malformed
    raises TaskFormatError naming the file and line."""
    path = Path(path)
    examples = []
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            where = f"{path}:{number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise TaskFormatError(f"{where}: not UTF-8 ({error.reason})") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise TaskFormatError(
                    f"{where}: not valid JSON ({error.msg}, column {error.colno})"
                ) from None
            examples.append(parse_example(record, where))
    if not examples:
        raise TaskFormatError(f"{path}: the task has no examples (the file is empty)")
    return examples


def shot_indices(index: int, count: int, shots: int, seed: int) -> list[int]:
    """Up to `shots` distinct examples other than `index`, out of `count`, fixed by the seed."""
    rng = random.Random(f"{seed}:{index}")
    drawn = rng.sample(range(count - 1), min(shots, count - 1))
    return [other + (other >= index) for other in drawn]


def few_shot_prompt(examples: list[ChoiceExample], index: int, shot_ids: list[int]) -> str:
    """The shots, each its context and gold choice, then question `index`'s context."""
    solved = [examples[j].context + examples[j].choices[examples[j].gold] for j in shot_ids]
    return SHOT_SEPARATOR.join([*solved, examples[index].context])


def encode_pair(tokenizer: Tokenizer, prompt: str, choice: str) -> tuple[list[int], list[int]]:
    """(prompt tokens, choice tokens): trailing whitespace of the prompt goes with the choice,
    the choice's tokens are those of the whole text past the stripped prompt's, and the prompt
    starts as every training document did (BOS where the model adds one); an empty prompt
    becomes what each document follows (that BOS, else the previous document's EOS)."""
    stripped = prompt.rstrip()
    choice = prompt[len(stripped) :] + choice
    if not stripped:
        return tokenizer.context_start(), tokenizer.encode(choice)
    prompt_ids = tokenizer.encode(stripped)
    choice_ids = tokenizer.encode(stripped + choice)[len(prompt_ids) :]
    return tokenizer.text_start() + prompt_ids, choice_ids or tokenizer.encode(choice)


@dataclass
class FittedQuestion:
    """One question's prompt and choice tokens, fitted to the model's positions: how many
    shots it kept, and whether even without shots its context had to be cut."""

    prompt_ids: list[int]
    choice_ids: list[list[int]]
    shots: int
    truncated: bool

    def rows(self, max_positions: int) -> tuple[list[list[int]], list[int]]:
        """Prompt and choice as one row per choice, cut from the left to `max_positions` + 1
        tokens, and how many tokens at the end of each are the choice's."""
        rows = [(self.prompt_ids + ids)[-(max_positions + 1) :] for ids in self.choice_ids]
        scored = [
            min(len(ids), len(row) - 1) for ids, row in zip(self.choice_ids, rows, strict=True)
        ]
        return rows, scored


def fit_question(
    tokenizer: Tokenizer,
    examples: list[ChoiceExample],
    index: int,
    shots: int,
    seed: int,
    max_positions: int,
) -> FittedQuestion:
    """Fit question `index` in `max_positions`: drop the shots farthest from the question
    first; with none left, mark it to be cut from the left (the choice's tokens are kept)."""
    drawn = shot_indices(index, len(examples), shots, seed)
    for kept in range(len(drawn), -1, -1):
        prompt = few_shot_prompt(examples, index, drawn[len(drawn) - kept :])
        pairs = [encode_pair(tokenizer, prompt, choice) for choice in examples[index].choices]
        longest = max(len(prompt_ids) + len(choice_ids) for prompt_ids, choice_ids in pairs)
        if longest - 1 <= max_positions:
            break
    prompt_ids = pairs[0][0]
    choice_ids = [ids for _, ids in pairs]
    return FittedQuestion(prompt_ids, choice_ids, kept, truncated=longest - 1 > max_positions)


def repeat_cache(cache: KVCache, times: int) -> None:
    """Turn a cache filled for one row into `times` rows holding the same keys and values."""
    cache.keys = [keys.expand(times, -1, -1, -1).clone() for keys in cache.keys]
    cache.values = [values.expand(times, -1, -1, -1).clone() for values in cache.values]


def padded_batch(rows: list[list[int]], scored: list[int], pad_id: int) -> tuple[Tensor, Tensor]:
    """(inputs, targets) of rows right-padded with `pad_id`: inputs are each row but its last
    token; the targets of its last `scored` inputs are the tokens that follow them, the others
    ignored."""
    width = max(len(row) for row in rows) - 1
    inputs = torch.full((len(rows), width), pad_id, dtype=torch.long)
    targets = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    for slot, (row, count) in enumerate(zip(rows, scored, strict=True)):
        length = len(row) - 1
        inputs[slot, :length] = torch.tensor(row[:-1])
        targets[slot, length - count : length] = torch.tensor(row[length - count + 1 :])
    return inputs, targets


def summed_log_probs(logits: Tensor, targets: Tensor) -> list[float]:
    """Per row, the summed log-probability of its targets (IGNORE_INDEX skipped)."""
    picked = targets != IGNORE_INDEX
    log_probs = F.log_softmax(logits[picked].float(), dim=-1)
    scores = log_probs.gather(1, targets[picked][:, None]).squeeze(1).double()
    sums = torch.zeros(targets.size(0), dtype=torch.float64, device=targets.device)
    sums.index_add_(0, picked.nonzero()[:, 0], scores)
    return sums.tolist()


@torch.no_grad()
def shared_prompt_log_likelihoods(
    model: HeloxLM,
    prompt_ids: list[int],
    choice_ids: list[list[int]],
    device: torch.device,
    pad_id: int,
) -> list[float]:
    """Each choice's summed log-likelihood after one prompt: the decoder runs over the prompt
    but its last token once, then every choice, after that token, in one batch over copies
    of the prompt's cached keys and values (no logits are computed for the prompt)."""
    cache = KVCache(model.config.num_layers, len(prompt_ids) + max(map(len, choice_ids)) - 1)
    if len(prompt_ids) > 1:
        model.model(torch.tensor([prompt_ids[:-1]], device=device), cache=cache)
        repeat_cache(cache, len(choice_ids))
    rows = [prompt_ids[-1:] + ids for ids in choice_ids]
    inputs, targets = padded_batch(rows, [len(ids) for ids in choice_ids], pad_id)
    return summed_log_probs(model(inputs.to(device), cache=cache).logits, targets.to(device))


@torch.no_grad()
def row_log_likelihoods(
    model: HeloxLM,
    rows: list[list[int]],
    scored: list[int],
    device: torch.device,
    batch_size: int,
    pad_id: int,
) -> list[float]:
    """Sum of log-probabilities of the last `scored[i]` tokens of each row given the tokens
    before them; `batch_size` rows of similar length a forward, right-padded with `pad_id`."""
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]), reverse=True)
    totals = [0.0] * len(rows)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        inputs, targets = padded_batch([rows[i] for i in chunk], [scored[i] for i in chunk], pad_id)
        sums = summed_log_probs(model(inputs.to(device)).logits, targets.to(device))
        for i, total in zip(chunk, sums, strict=True):
            totals[i] = total
    return totals


@dataclass
class ChoiceScores:
    """Each question's choice log-likelihoods, and how its prompt was fitted."""

    log_likelihoods: list[list[float]]
    shots_used: list[int]
    truncated: list[bool]


def score_choices(
    model: HeloxLM,
    tokenizer: Tokenizer,
    examples: list[ChoiceExample],
    shots: int,
    seed: int,
    device: str | torch.device,
    batch_size: int,
) -> ChoiceScores:
    """The summed log-likelihood of every choice of every example, few-shot prompted.

    A question that fits runs its prompt once and its choices together over the prompt's
    cached keys and values (`shared_prompt_log_likelihoods`); questions cut to fit run as
    whole rows, `batch_size` a forward.
    """
    model.eval()
    device = torch.device(device)
    max_positions, _ = sequence_limit(model.config)
    fitted = [
        fit_question(tokenizer, examples, index, shots, seed, max_positions)
        for index in range(len(examples))
    ]
    likelihoods = [
        []
        if question.truncated
        else shared_prompt_log_likelihoods(
            model, question.prompt_ids, question.choice_ids, device, tokenizer.pad
        )
        for question in fitted
    ]
    cut = [index for index, question in enumerate(fitted) if question.truncated]
    rows, scored = [], []
    for index in cut:
        question_rows, question_scored = fitted[index].rows(max_positions)
        rows += question_rows
        scored += question_scored
    flat = iter(row_log_likelihoods(model, rows, scored, device, batch_size, tokenizer.pad))
    for index in cut:
        likelihoods[index] = [next(flat) for _ in fitted[index].choice_ids]
    return ChoiceScores(
        log_likelihoods=likelihoods,
        shots_used=[question.shots for question in fitted],
        truncated=[question.truncated for question in fitted],
    )


def centered_accuracy(accuracy: float, chance: float) -> float:
    """Accuracy with chance removed: 0 at chance, 1 when every answer is right (CORE)."""
    return (accuracy - chance) / (1.0 - chance)


def summarize(examples: list[ChoiceExample], scores: ChoiceScores, shots: int) -> dict:
    """Accuracy by summed log-likelihood and by log-likelihood per UTF-8 byte of the choice
    (lm-eval's `acc_bytes`), the chance baseline and the centered accuracy."""
    right = right_per_byte = 0
    for example, likelihoods in zip(examples, scores.log_likelihoods, strict=True):
        lengths = np.array([len(choice.encode("utf-8")) for choice in example.choices])
        right += int(np.argmax(likelihoods)) == example.gold
        right_per_byte += int(np.argmax(np.array(likelihoods) / lengths)) == example.gold
    count = len(examples)
    accuracy = right / count
    chance = sum(1.0 / len(example.choices) for example in examples) / count
    return {
        "examples": count,
        "shots": shots,
        "accuracy": accuracy,
        "accuracy_norm": right_per_byte / count,
        "chance": chance,
        "centered_accuracy": centered_accuracy(accuracy, chance),
        "truncated": sum(scores.truncated),
        "shots_dropped": sum(1 for used in scores.shots_used if used < min(shots, count - 1)),
    }


def run_choice_task(
    folder: str | os.PathLike,
    path: str | os.PathLike,
    shots: int,
    seed: int,
    device: str = "auto",
    batch_size: int = 8,
    name: str | None = None,
) -> dict:
    """Score the model of a final folder on the JSONL task at `path` (named after its file
    unless `name` is given); the JSON-ready summary of its scores."""
    examples = read_choice_task(path)
    torch_device = DeviceManager(device).device
    model, _ = load_final(folder, torch_device)
    tokenizer = load_tokenizer(folder)
    scores = score_choices(model, tokenizer, examples, shots, seed, torch_device, batch_size)
    summary = summarize(examples, scores, shots)
    return {"task": name or Path(path).stem, **summary}
