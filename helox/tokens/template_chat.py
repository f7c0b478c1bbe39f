"""A model folder's own Jinja chat template, rendered as transformers renders it, and its
response-only loss mask, found exactly.

The environment is transformers' (`apply_chat_template`): a sandbox with `trim_blocks`,
`lstrip_blocks` and loop controls, a `tojson` that keeps non-ASCII text and `<>&'` as they are,
`raise_exception` and `strftime_now`; the template sees `messages`, `tools`, `documents`,
`add_generation_prompt` and the special tokens the folder names (`bos_token`, ...). Rendered
text is tokenized without adding special tokens again: the template holds BOS where the
model wants it.

The mask is never guessed from string offsets. For assistant turn k, the tokens of the
conversation before it with the assistant's turn opened (`add_generation_prompt`) must be
the first tokens of the conversation up to and including it; the tokens after them are the
turn, trained up to and including its end-of-turn token (the first special token after its
text); what follows that (Qwen's "\\n") is context. A template for which this fails on a
one-turn conversation is refused. When the whole conversation's tokens do not begin with
those of every turn's (Qwen3 drops the `<think>` block of assistant turns that a later user
turn follows), each trained turn becomes its own example holding the conversation up to it,
so every trained token is what the template renders there.
"""

from __future__ import annotations

import functools
import json
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from helox.tokens.chat import ChatFormat, RenderedChat, is_trained
from helox.tokens.interface import Tokenizer

PROBE = [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi there"}]


class NotAPrefixError(ValueError):
    """The tokens before an assistant turn are not the first tokens of the turn's render."""


def raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    """transformers' `tojson`: plain `json.dumps`, not Jinja's HTML-safe one."""
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


@functools.lru_cache(maxsize=16)
def compile_template(source: str) -> jinja2.Template:
    environment = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    environment.filters["tojson"] = tojson
    environment.globals["raise_exception"] = raise_exception
    environment.globals["strftime_now"] = strftime_now
    return environment.from_string(source)


class TemplateChat(ChatFormat):
    """A Jinja chat template over a tokenizer; `where` names the model folder in messages,
    `context` adds template variables (Llama 3's `date_string`)."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        template: str,
        where: str,
        context: dict[str, Any] | None = None,
    ) -> None:
        self.where = where
        try:
            self.template = compile_template(template)
        except jinja2.TemplateError as error:
            raise ValueError(f"{where}: its chat template does not compile ({error})") from None
        self.context = {**tokenizer.specials.named, **(context or {})}
        self.tokenizer = tokenizer
        try:
            start, ids = self.turn(PROBE, 1)
        except NotAPrefixError:
            raise ValueError(
                f"{where}: its chat template cannot be masked exactly: the tokens of the prompt "
                f"{self.render(PROBE[:1], True)!r} are not the first tokens of the conversation "
                f"{self.render(PROBE, False)!r}"
            ) from None
        turn_ids = ids[start:]
        end = turn_ids[self.trained_length(turn_ids) - 1] if turn_ids else None
        super().__init__(tokenizer, end if end in tokenizer.special_ids else None)

    def render(self, messages: list[dict], add_generation_prompt: bool) -> str:
        """The template's text of `messages` (their role and content)."""
        plain = [{"role": m["role"], "content": m["content"]} for m in messages]
        try:
            return self.template.render(
                messages=plain,
                tools=None,
                documents=None,
                add_generation_prompt=add_generation_prompt,
                **self.context,
            )
        except jinja2.TemplateError as error:
            raise ValueError(f"the chat template of {self.where} refuses it: {error}") from None

    def ids(self, messages: list[dict], add_generation_prompt: bool = False) -> list[int]:
        return self.tokenizer.encode(self.render(messages, add_generation_prompt))

    def prompt(self, messages: list[dict]) -> list[int]:
        return self.ids(messages, add_generation_prompt=True)

    def turn(self, messages: list[dict], index: int) -> tuple[int, list[int]]:
        """(where assistant turn `index` starts, the ids of the conversation up to it)."""
        before = self.ids(messages[:index], add_generation_prompt=True)
        upto = self.ids(messages[: index + 1])
        if upto[: len(before)] != before:
            raise NotAPrefixError(
                "the chat template renders the prompt before an assistant turn differently"
            )
        return len(before), upto

    def trained_length(self, turn_ids: list[int]) -> int:
        """How many of a turn's ids are trained: up to and including its end-of-turn token."""
        special = self.tokenizer.special_ids
        seen_text = False
        for position, token_id in enumerate(turn_ids):
            if token_id in special and seen_text:
                return position + 1
            seen_text |= token_id not in special
        return len(turn_ids)

    def examples(self, messages: list[dict]) -> list[RenderedChat]:
        full = self.ids(messages)
        turns = []
        for index, message in enumerate(messages):
            if is_trained(message):
                start, upto = self.turn(messages, index)
                turns.append((start, self.trained_length(upto[start:]), upto))
        if all(full[: len(upto)] == upto for _, _, upto in turns):
            trained = [False] * len(full)
            for start, length, _ in turns:
                trained[start : start + length] = [True] * length
            return [RenderedChat(full, trained)]
        return [
            RenderedChat(upto, [start <= i < start + length for i in range(len(upto))])
            for start, length, upto in turns
        ]
