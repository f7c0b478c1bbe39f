"""The one chat template, shared by SFT training, evaluation, `generate` and `chat`.

A conversation renders as

    <s> [<|system|> text <|end|>] <|user|> text <|end|> <|assistant|> text <|end|> ... </s>

Markers are control symbols of the tokenizer: inserted by id, never produced by
encoding user text, so a message cannot forge a turn. The loss mask covers the
assistant's text and the `<|end|>` that closes it (so the model learns to stop), but for
an assistant message marked `"weight": 0`, which stays context.
"""

from __future__ import annotations

from dataclasses import dataclass

import sentencepiece as spm

from helox.tokens.vocab import SPECIAL_IDS

ROLES = ("system", "user", "assistant")
END = SPECIAL_IDS["<|end|>"]
BOS = SPECIAL_IDS["<s>"]
EOS = SPECIAL_IDS["</s>"]
ROLE_IDS = {role: SPECIAL_IDS[f"<|{role}|>"] for role in ROLES}


def is_trained(message: dict) -> bool:
    """Whether the loss counts `message`: an assistant turn not marked `"weight": 0`."""
    return message["role"] == "assistant" and message.get("weight", 1) != 0


@dataclass
class RenderedChat:
    """Token ids of a conversation and, per token, whether the loss counts it."""

    ids: list[int]
    trained: list[bool]


def render_chat(messages: list[dict], processor: spm.SentencePieceProcessor) -> RenderedChat:
    """Render a whole conversation for training: every assistant turn is trained on, but
    those marked `"weight": 0`."""
    ids, trained = [BOS], [False]
    for message in messages:
        content = processor.encode(message["content"])
        ids += [ROLE_IDS[message["role"]], *content, END]
        trained += [False] + [is_trained(message)] * (len(content) + 1)
    ids.append(EOS)
    trained.append(False)
    return RenderedChat(ids, trained)


def render_prompt(
    messages: list[dict[str, str]], processor: spm.SentencePieceProcessor
) -> list[int]:
    """Render the conversation so far and open the assistant's turn, for generation."""
    ids = [BOS]
    for message in messages:
        ids += [ROLE_IDS[message["role"]], *processor.encode(message["content"]), END]
    return ids + [ROLE_IDS["assistant"]]


def pair_to_messages(instruction: str, response: str, extra_input: str = "") -> list[dict]:
    """The guide's {"instruction", "input", "response"} pair as a two-turn conversation."""
    user = f"{instruction}\n\n{extra_input}" if extra_input else instruction
    return [{"role": "user", "content": user}, {"role": "assistant", "content": response}]
