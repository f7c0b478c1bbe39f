"""A model folder's own `tokenizer.json`, read with the `tokenizers` library.

`tokenizers` is the Rust implementation behind transformers' fast tokenizers, so text encodes
to the ids transformers gives (special-token strings in the text included, as transformers
finds them). Whether the model puts a BOS before a text is what the file's post-processor
adds (Llama 3 adds `<|begin_of_text|>`, Qwen adds nothing), not `add_bos_token`, which
transformers 5 reports as false even where the post-processor adds one.

Byte lengths: byte-level BPE (GPT-2, Llama 3, Qwen) writes each byte as one printable
character, so a piece's bytes are its characters mapped back; a SentencePiece-style
`tokenizer.json` (Metaspace, byte fallback) counts `▁` as a space and `<0xNN>` as one byte.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import tokenizers

from helox.tokens.folder_files import TOKENIZER_CONFIG, FolderTokenizer, TokenizerFiles

JSON_FILE = "tokenizer.json"
BYTE_PIECE = re.compile(r"<0x[0-9A-Fa-f]{2}>")
SENTENCEPIECE_SPACE = "\u2581"


def byte_alphabet() -> dict[str, int]:
    """The character byte-level BPE writes for each byte: printable Latin-1 bytes stand for
    themselves, the others take the characters from 256 on, in byte order."""
    printable = {*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)}
    printable |= set(range(ord("®"), ord("ÿ") + 1))
    shifted = iter(range(256, 512))
    return {chr(b if b in printable else next(shifted)): b for b in range(256)}


def read_tokenizer_json(path: Path) -> tokenizers.Tokenizer:
    """A `tokenizer.json`; a message naming it when it is unreadable or does not parse."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such tokenizer.json")
    try:
        return tokenizers.Tokenizer.from_file(str(path))
    except Exception as error:  # the library raises a bare Exception for any parse error
        raise ValueError(
            f"{path}: not a tokenizer.json the tokenizers library can read ({error})"
        ) from None


def has_type(component: Any, name: str) -> bool:
    """Whether a serialised pipeline component is of type `name` or a sequence holding one."""
    if isinstance(component, dict):
        return component.get("type") == name or any(
            has_type(value, name) for value in component.values()
        )
    if isinstance(component, list):
        return any(has_type(value, name) for value in component)
    return False


class JsonTokenizer(FolderTokenizer):
    """A folder's `tokenizer.json`, with the tokens its `tokenizer_config.json` adds."""

    kind = "tokenizer.json"

    def __init__(self, files: TokenizerFiles, backend: tokenizers.Tokenizer | None = None) -> None:
        self.source = backend or read_tokenizer_json(files.folder / JSON_FILE)
        self.backend = self.with_config_tokens(self.source, files)
        decoder = self.backend.decoder
        self.byte_level = decoder is not None and has_type(
            json.loads(decoder.__getstate__()), "ByteLevel"
        )
        specials = files.special_tokens(self.token_id, self.vocab_size, {}, self.piece)
        added_before = self.prepended_ids()
        if added_before:
            specials = dataclasses.replace(specials, bos=added_before[0])
        super().__init__(files, specials, adds_bos=bool(added_before))

    @staticmethod
    def with_config_tokens(
        source: tokenizers.Tokenizer, files: TokenizerFiles
    ) -> tokenizers.Tokenizer:
        """`source`, or a copy holding the tokens `added_tokens_decoder` adds to it, at
        their ids; refused naming the file where an id is not the next free one."""
        missing = {
            i: entry
            for i, entry in files.added_tokens().items()
            if source.token_to_id(entry[0]) is None
        }
        if not missing:
            return source
        backend = tokenizers.Tokenizer.from_str(source.to_str())
        for token_id, (content, special) in sorted(missing.items()):
            token = tokenizers.AddedToken(content, special=special, normalized=False)
            if special:
                backend.add_special_tokens([token])
            else:
                backend.add_tokens([token])
            if backend.token_to_id(content) != token_id:
                raise ValueError(
                    f"{files.folder / TOKENIZER_CONFIG}: added_tokens_decoder puts {content!r} at "
                    f"id {token_id}, but the next free id of {JSON_FILE} is "
                    f"{backend.token_to_id(content)}"
                )
        return backend

    def prepended_ids(self) -> list[int]:
        """The ids the post-processor puts before a text (BOS, where the model adds one)."""
        with_specials = self.backend.encode("a").ids
        plain = self.backend.encode("a", add_special_tokens=False).ids
        for start in range(len(with_specials) - len(plain) + 1):
            if with_specials[start : start + len(plain)] == plain:
                return with_specials[:start]
        return []

    def with_files(self, files: TokenizerFiles) -> FolderTokenizer:
        return JsonTokenizer(files, self.source)

    @cached_property
    def added_tokens(self) -> dict[int, tokenizers.AddedToken]:
        return self.backend.get_added_tokens_decoder()

    @cached_property
    def vocab_size(self) -> int:
        base = self.backend.get_vocab_size(with_added_tokens=False)
        return max(base, max(self.added_tokens, default=-1) + 1)

    @property
    def model_file(self) -> Path:
        return self.folder / JSON_FILE

    def encode_batch(self, texts: Sequence[str], threads: int = 1) -> list[list[int]]:
        encoded = self.backend.encode_batch(list(texts), add_special_tokens=False)
        return [encoding.ids for encoding in encoded]

    def decode(self, ids: Sequence[int]) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=True)

    @cached_property
    def base_vocab(self) -> dict[int, str]:
        """{id: token} of the model's own vocabulary (added tokens apart)."""
        return {i: token for token, i in self.backend.get_vocab(with_added_tokens=False).items()}

    def token_bytes(self) -> list[int]:
        lengths = [0] * self.vocab_size
        for token_id, token in self.base_vocab.items():
            if self.byte_level and not OUTSIDE_BYTE_ALPHABET.search(token):
                lengths[token_id] = len(token)  # one character for each byte
            else:
                lengths[token_id] = len(self.piece_bytes(token))
        for token_id, token in self.added_tokens.items():
            lengths[token_id] = 0 if token.special else len(token.content.encode("utf-8"))
        return lengths

    def piece_bytes(self, token: str) -> bytes:
        """The bytes a piece of the model's vocabulary stands for."""
        if self.byte_level:
            if OUTSIDE_BYTE_ALPHABET.search(token):
                return token.encode("utf-8")
            return bytes(BYTE_ALPHABET[char] for char in token)
        if BYTE_PIECE.fullmatch(token):
            return bytes([int(token[3:5], 16)])
        return token.replace(SENTENCEPIECE_SPACE, " ").encode("utf-8")

    def piece(self, token_id: int) -> str:
        added = self.added_tokens.get(token_id)
        if added is not None:
            return added.content
        token = self.backend.id_to_token(token_id)
        if token is None or not self.byte_level:
            return token or ""
        return self.piece_bytes(token).decode("utf-8", "backslashreplace")

    def token_id(self, content: str) -> int | None:
        return self.backend.token_to_id(content)

    @cached_property
    def special_ids(self) -> frozenset[int]:
        return frozenset(i for i, token in self.added_tokens.items() if token.special)

    @cached_property
    def byte_fallback_ids(self) -> frozenset[int]:
        if self.byte_level:
            return frozenset()
        return frozenset(i for i, token in self.base_vocab.items() if BYTE_PIECE.fullmatch(token))


BYTE_ALPHABET = byte_alphabet()
OUTSIDE_BYTE_ALPHABET = re.compile(f"[^{re.escape(''.join(BYTE_ALPHABET))}]")
