"""The one tokenizer interface that every stage asks, whatever the kind behind it.

Shards, SFT and DPO rendering, generation, bits per byte, evaluation and the report never
assume an id: they ask a `Tokenizer` for its text ↔ ids, its special ids (BOS, EOS, padding,
the stops of generation), whether the model puts a BOS before each text, each id's length in
UTF-8 bytes, and the files that define it. The kinds live in helox.tokens.sentencepiece_kinds
(Helox's own SentencePiece, a model folder's `tokenizer.model`) and helox.tokens.json_kind
(a `tokenizer.json`); helox.tokens.vocab.load_tokenizer picks one for a folder.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import ClassVar

from helox.common.io import sha256_file


@dataclass(frozen=True)
class SpecialTokens:
    """The special ids of a tokenizer, as its folder names them."""

    eos: int  # ends every document and every generation
    pad: int  # the folder's pad token, else EOS: padding is masked out of every loss
    bos: int | None = None
    unk: int | None = None
    stops: tuple[int, ...] = ()  # generation_config's eos_token_id list (besides eos)
    # What the configs call them ({"bos_token": "<s>", ...}), for chat templates.
    named: dict[str, str] = field(default_factory=dict)


class Tokenizer(ABC):
    """Text ↔ ids, special ids and byte lengths of one tokenizer kind.

    `encode` never adds special tokens: `document_ids` puts BOS (where the model's
    convention adds one) before a text and EOS after it, and a chat template holds them
    itself.
    """

    kind: ClassVar[str]  # what the report and the logs call it

    def __init__(self, folder: Path, specials: SpecialTokens, adds_bos: bool) -> None:
        self.folder = folder
        self.specials = specials
        self.adds_bos = adds_bos

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Ids run from 0 to vocab_size - 1."""

    @property
    @abstractmethod
    def model_file(self) -> Path:
        """The file that holds the vocabulary: `tokenizer.json` or a SentencePiece model."""

    @property
    @abstractmethod
    def chat_template(self) -> str | None:
        """The Jinja chat template the folder brings, or None."""

    @abstractmethod
    def encode_batch(self, texts: Sequence[str], threads: int = 1) -> list[list[int]]:
        """The ids of each text, without special tokens added."""

    @abstractmethod
    def decode(self, ids: Sequence[int]) -> str:
        """The text of `ids`, special tokens left out."""

    @abstractmethod
    def token_bytes(self) -> list[int]:
        """UTF-8 bytes each id stands for: 0 for a special token, 1 for a byte piece."""

    @abstractmethod
    def piece(self, token_id: int) -> str:
        """A printable form of one id, for the report."""

    @abstractmethod
    def token_id(self, content: str) -> int | None:
        """The id of a token given as its text (`<|im_end|>`), or None."""

    @property
    @abstractmethod
    def special_ids(self) -> frozenset[int]:
        """Ids of special (control) tokens: never text, 0 bytes, left out by `decode`."""

    @property
    @abstractmethod
    def byte_fallback_ids(self) -> frozenset[int]:
        """Ids that spell a single byte the vocabulary has no piece for (`<0x41>`)."""

    @abstractmethod
    def with_added_tokens(self, contents: Sequence[str]) -> Tokenizer:
        """A copy that also holds `contents` as special tokens, at the next free ids."""

    @abstractmethod
    def with_chat_template(self, template: str, stop: int | None) -> Tokenizer:
        """A copy whose folder brings `template`, generation also stopping at `stop`."""

    @abstractmethod
    def write_files(self, folder: Path, chat: bool) -> None:
        """Write the tokenizer's files into a model folder (`chat`: a chat model's)."""

    def encode(self, text: str) -> list[int]:
        return self.encode_batch([text])[0]

    @property
    def eos(self) -> int:
        return self.specials.eos

    @property
    def bos(self) -> int | None:
        return self.specials.bos

    @property
    def pad(self) -> int:
        return self.specials.pad

    @property
    def stop_ids(self) -> tuple[int, ...]:
        """Where generation stops: EOS and generation_config's eos_token_id list."""
        return tuple(dict.fromkeys((self.eos, *self.specials.stops)))

    def document_ids(self, ids: list[int]) -> list[int]:
        """A document's ids as training sees them: BOS where the model adds one, then EOS."""
        return [*self.text_start(), *ids, self.eos]

    def text_start(self) -> list[int]:
        """What a model that adds BOS sees before any text; nothing for one that does not."""
        return [self.bos] if self.adds_bos and self.bos is not None else []

    def context_start(self) -> list[int]:
        """What a document follows in the training stream: BOS where the model adds one,
        else the previous document's EOS."""
        return self.text_start() or [self.eos]

    @cached_property
    def sha256(self) -> str:
        """What the shards record: the vocabulary file's SHA-256, with the ids that wrap
        each document. Chat markers and templates added later leave it as it is."""
        defining = {"file": sha256_file(self.model_file), "eos": self.eos}
        if self.adds_bos:
            defining["bos"] = self.bos
        return hashlib.sha256(json.dumps(defining, sort_keys=True).encode()).hexdigest()
