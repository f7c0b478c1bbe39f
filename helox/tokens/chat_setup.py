"""Which chat format a model folder gets, for training (`prepare_chat`) and for generation and
evaluation (`chat_format`).

- Helox's own tokenizer: Helox's template, its markers inserted by id.
- A folder that brings a template: that template, as transformers renders it.
- A base folder without one (Mistral 7B v0.1): Helox's template, its markers
  (`<|system|> <|user|> <|assistant|> <|end|>`) added to the tokenizer as new special tokens
  at the next free ids; the model gets rows for them (helox.model.token_rows).
- `sft.chat_template` / `dpo.chat_template` naming a Jinja file: that template, whatever the
  folder brings.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from helox.tokens.chat import HELOX_CHAT_TEMPLATE, ChatFormat, HeloxChat
from helox.tokens.interface import Tokenizer
from helox.tokens.template_chat import TemplateChat
from helox.tokens.vocab import CHAT_MARKERS

log = logging.getLogger(__name__)


@dataclass
class PreparedChat:
    """A stage's tokenizer and chat format, and the ids of tokens added for the template."""

    tokenizer: Tokenizer
    chat: ChatFormat
    added_ids: list[int] = field(default_factory=list)


def chat_format(tokenizer: Tokenizer, where: str) -> ChatFormat:
    """The chat format of a folder as it is: its template, else Helox's where it has the
    markers (Helox's own tokenizer always does)."""
    if tokenizer.chat_template is not None:
        return TemplateChat(tokenizer, tokenizer.chat_template, where)
    if tokenizer.kind == "helox":
        return HeloxChat(tokenizer)
    if all(tokenizer.token_id(marker) is not None for marker in CHAT_MARKERS):
        return TemplateChat(tokenizer, HELOX_CHAT_TEMPLATE, where)
    raise ValueError(
        f"{where}: brings no chat template (no chat_template.jinja, no chat_template in "
        "tokenizer_config.json): fine-tune it with SFT first, or continue raw text with "
        "helox generate"
    )


def read_template(path: str, key: str) -> str:
    """The Jinja file a config key names; a message naming the key where it is unreadable."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(
            f"config key {key}: cannot read the chat template {path} ({error})"
        ) from None


def prepare_chat(tokenizer: Tokenizer, template_path: str, key: str, where: str) -> PreparedChat:
    """The tokenizer and chat format a tuning stage trains with (`template_path`: the
    config key `key`, "" for the folder's own or else Helox's)."""
    if template_path:
        template = read_template(template_path, key)
    elif tokenizer.chat_template is not None or tokenizer.kind == "helox":
        return PreparedChat(tokenizer, chat_format(tokenizer, where))
    else:
        template = HELOX_CHAT_TEMPLATE
    missing = [m for m in CHAT_MARKERS if tokenizer.token_id(m) is None]
    grown = tokenizer.with_added_tokens(missing) if missing and not template_path else tokenizer
    added = list(range(tokenizer.vocab_size, grown.vocab_size))
    if added:
        log.info(
            "%s brings no chat template: Helox's template it is, its markers %s added as "
            "special tokens %d-%d",
            where,
            " ".join(missing),
            added[0],
            added[-1],
        )
    chat = TemplateChat(grown, template, where)
    chat.tokenizer = grown.with_chat_template(template, chat.end_of_turn)
    return PreparedChat(chat.tokenizer, chat, added)
