"""Chat formats: how a conversation becomes token ids, for SFT and DPO training, evaluation,
`generate` and `chat` alike.

Helox's own template, for Helox's own tokenizer, renders a conversation as

    <s> [<|system|> text <|end|>] <|user|> text <|end|> <|assistant|> text <|end|> ... </s>

Markers are control symbols of the tokenizer: inserted by id, never produced by
encoding user text, so a message cannot forge a turn. The loss mask covers the
assistant's text and the `<|end|>` that closes it (so the model learns to stop), but for
an assistant message marked `"weight": 0`, which stays context.

A model folder's own Jinja template is rendered as transformers renders it
(helox.tokens.template_chat); helox.tokens.chat_setup picks the format for a folder.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property

from helox.tokens.interface import Tokenizer
from helox.tokens.vocab import SPECIAL_IDS

ROLES = ("system", "user", "assistant")
END = SPECIAL_IDS["<|end|>"]
BOS = SPECIAL_IDS["<s>"]
EOS = SPECIAL_IDS["</s>"]
ROLE_IDS = {role: SPECIAL_IDS[f"<|{role}|>"] for role in ROLES}
# Helox's template in Jinja, for transformers' `apply_chat_template` on a Helox folder and
# for a folder of another tokenizer that takes Helox's template (its markers added to it).
HELOX_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


def is_trained(message: dict) -> bool:
    """Whether the loss counts `message`: an assistant turn not marked `"weight": 0`."""
    return message["role"] == "assistant" and message.get("weight", 1) != 0


@dataclass
class RenderedChat:
    """Token ids of a conversation and, per token, whether the loss counts it."""

    ids: list[int]
    trained: list[bool]


class ChatFormat(ABC):
    """A chat template over a tokenizer: training examples, prompts and where turns end."""

    def __init__(self, tokenizer: Tokenizer, end_of_turn: int | None) -> None:
        self.tokenizer = tokenizer
        self.end_of_turn = end_of_turn

    @abstractmethod
    def examples(self, messages: list[dict]) -> list[RenderedChat]:
        """The training examples of one conversation (one, unless the template rewrites
        earlier turns once later ones follow); ValueError where it cannot be masked exactly."""

    @abstractmethod
    def prompt(self, messages: list[dict]) -> list[int]:
        """The conversation so far with the assistant's turn opened, for generation."""

    @property
    def stop_ids(self) -> tuple[int, ...]:
        """Where a reply ends: the end of the turn, EOS and generation_config's stops."""
        ends = () if self.end_of_turn is None else (self.end_of_turn,)
        return tuple(dict.fromkeys((*ends, *self.tokenizer.stop_ids)))

    @cached_property
    def head_length(self) -> int:
        """How many leading tokens every prompt shares (BOS, a default system turn, the
        user's header): kept when a long prompt is cut from the left."""
        first, second = (self.prompt([{"role": "user", "content": c}]) for c in ("a", "b"))
        return next(
            (i for i, (x, y) in enumerate(zip(first, second, strict=False)) if x != y),
            min(len(first), len(second)),
        )


def render_chat(messages: list[dict], tokenizer: Tokenizer) -> RenderedChat:
    """Render a whole conversation in Helox's template for training: every assistant turn is
    trained on, but those marked `"weight": 0`."""
    ids, trained = [BOS], [False]
    for message in messages:
        content = tokenizer.encode(message["content"])
        ids += [ROLE_IDS[message["role"]], *content, END]
        trained += [False] + [is_trained(message)] * (len(content) + 1)
    ids.append(EOS)
    trained.append(False)
    return RenderedChat(ids, trained)


def render_prompt(messages: list[dict[str, str]], tokenizer: Tokenizer) -> list[int]:
    """Render the conversation so far in Helox's template and open the assistant's turn."""
    ids = [BOS]
    for message in messages:
        ids += [ROLE_IDS[message["role"]], *tokenizer.encode(message["content"]), END]
    return ids + [ROLE_IDS["assistant"]]


class HeloxChat(ChatFormat):
    """Helox's own template over Helox's own tokenizer, its markers inserted by id."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        super().__init__(tokenizer, END)

    def examples(self, messages: list[dict]) -> list[RenderedChat]:
        return [render_chat(messages, self.tokenizer)]

    def prompt(self, messages: list[dict]) -> list[int]:
        return render_prompt(messages, self.tokenizer)


def pair_to_messages(instruction: str, response: str, extra_input: str = "") -> list[dict]:
    """The guide's {"instruction", "input", "response"} pair as a two-turn conversation."""
    user = f"{instruction}\n\n{extra_input}" if extra_input else instruction
    return [{"role": "user", "content": user}, {"role": "assistant", "content": response}]
