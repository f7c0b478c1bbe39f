"""The SentencePiece kinds: Helox's own model, and a model folder's own `tokenizer.model`.

Helox's own (`HeloxTokenizer`) keeps its contract: `<unk> <s> </s> <pad>` and the chat
markers at ids 0-7, control symbols that encoding text never produces, no BOS before a
document, byte fallback. Its model folders carry the `tokenizer.model` with the
`tokenizer_config.json` and `generation_config.json` that make it load in transformers.

A folder's own `tokenizer.model` (`SentencePieceTokenizer`, e.g. Mistral 7B v0.1's) encodes as
transformers' fast tokenizer converted from it does, which is sentencepiece itself on plain
text: the strings of its special and added tokens are found in the text first (`"x <s> y"`
holds id 1), and each stretch between them is encoded by sentencepiece. Its BOS convention is
`tokenizer_config.json`'s `add_bos_token` (absent: none, as transformers does for a bare
model). transformers 5's `LlamaTokenizer` class departs from sentencepiece on texts that
start with a space; Helox follows sentencepiece, what the model was trained with.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import sentencepiece as spm

from helox.common.io import sha256_file
from helox.tokens.chat import HELOX_CHAT_TEMPLATE
from helox.tokens.folder_files import (
    GENERATION_CONFIG,
    TOKENIZER_CONFIG,
    FolderTokenizer,
    TokenizerFiles,
    read_config,
)
from helox.tokens.interface import SpecialTokens, Tokenizer
from helox.tokens.vocab import BOS, CHAT_MARKERS, EOS, PAD, SPECIAL_IDS, UNK

SENTENCEPIECE_SPACE = "\u2581"
SENTENCEPIECE_FILE = "tokenizer.model"


def read_sentencepiece(path: Path) -> spm.SentencePieceProcessor:
    """A SentencePiece model file; a message naming it when it is missing or unreadable."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such SentencePiece model")
    try:
        return spm.SentencePieceProcessor(model_file=str(path))
    except (RuntimeError, OSError) as error:
        raise ValueError(
            f"{path}: not a SentencePiece model sentencepiece can read ({error})"
        ) from None


def holds_helox_ids(processor: spm.SentencePieceProcessor) -> bool:
    """Whether a SentencePiece model keeps Helox's contract: its special ids."""
    size = len(processor)
    return all(i < size and processor.id_to_piece(i) == p for p, i in SPECIAL_IDS.items())


def helox_chat_template(folder: Path) -> str | None:
    """The Jinja template a user chose over Helox's own for a folder of Helox's tokenizer
    (its `tokenizer_config.json`'s); None where the folder keeps Helox's own."""
    template = read_config(folder / TOKENIZER_CONFIG).get("chat_template")
    return template if template not in (None, HELOX_CHAT_TEMPLATE) else None


class SentencePieceVocab:
    """What both kinds read off a SentencePiece model: pieces, their bytes, byte pieces."""

    def __init__(self, path: Path, processor: spm.SentencePieceProcessor) -> None:
        self.path = path
        self.processor = processor

    def piece_bytes(self, token_id: int) -> int:
        processor = self.processor
        if processor.is_control(token_id) or processor.is_unknown(token_id):
            return 0
        if processor.is_byte(token_id):
            return 1
        piece = processor.id_to_piece(token_id).replace(SENTENCEPIECE_SPACE, " ")
        return len(piece.encode("utf-8"))

    @cached_property
    def control_ids(self) -> frozenset[int]:
        processor = self.processor
        return frozenset(
            i for i in range(len(processor)) if processor.is_control(i) or processor.is_unknown(i)
        )

    @cached_property
    def byte_ids(self) -> frozenset[int]:
        processor = self.processor
        return frozenset(i for i in range(len(processor)) if processor.is_byte(i))


class HeloxTokenizer(Tokenizer):
    """Helox's own SentencePiece model, with its special tokens at their fixed ids."""

    kind = "helox"

    def __init__(
        self,
        path: Path,
        chat_template: str | None = None,
        processor: spm.SentencePieceProcessor | None = None,
    ) -> None:
        processor = processor or read_sentencepiece(path)
        if not holds_helox_ids(processor):
            raise ValueError(f"{path}: does not hold Helox's special tokens at {SPECIAL_IDS}")
        specials = SpecialTokens(
            eos=SPECIAL_IDS[EOS],
            pad=SPECIAL_IDS[PAD],
            bos=SPECIAL_IDS[BOS],
            unk=SPECIAL_IDS[UNK],
            named={"bos_token": BOS, "eos_token": EOS, "pad_token": PAD, "unk_token": UNK},
        )
        super().__init__(path.parent, specials, adds_bos=False)
        self.vocab = SentencePieceVocab(path, processor)
        self.user_template = chat_template

    @property
    def processor(self) -> spm.SentencePieceProcessor:
        return self.vocab.processor

    @property
    def vocab_size(self) -> int:
        return len(self.processor)

    @property
    def model_file(self) -> Path:
        return self.vocab.path

    @property
    def chat_template(self) -> str | None:
        """A Jinja template a user chose over Helox's own; None for Helox's own."""
        return self.user_template

    @cached_property
    def sha256(self) -> str:
        return sha256_file(self.model_file)

    def encode_batch(self, texts: Sequence[str], threads: int = 1) -> list[list[int]]:
        return self.processor.encode(list(texts), num_threads=threads)

    def decode(self, ids: Sequence[int]) -> str:
        return self.processor.decode(list(ids))

    def token_bytes(self) -> list[int]:
        return [self.vocab.piece_bytes(i) for i in range(self.vocab_size)]

    def piece(self, token_id: int) -> str:
        return self.processor.id_to_piece(token_id)

    def token_id(self, content: str) -> int | None:
        found = self.processor.piece_to_id(content)
        return None if found == self.specials.unk and content != UNK else found

    @property
    def special_ids(self) -> frozenset[int]:
        return self.vocab.control_ids

    @property
    def byte_fallback_ids(self) -> frozenset[int]:
        return self.vocab.byte_ids

    def with_added_tokens(self, contents: Sequence[str]) -> Tokenizer:
        raise ValueError(f"{self.model_file}: Helox's own tokenizer already holds its markers")

    def with_chat_template(self, template: str, stop: int | None) -> Tokenizer:
        return HeloxTokenizer(self.model_file, template, self.processor)

    def write_files(self, folder: Path, chat: bool) -> None:
        """`tokenizer.model` and the configs that make it load in transformers: a chat model
        also stops at `<|end|>` and carries the chat template."""
        shutil.copyfile(self.model_file, folder / SENTENCEPIECE_FILE)
        tokenizer_config = {
            "tokenizer_class": "LlamaTokenizer",
            "unk_token": UNK,
            "bos_token": BOS,
            "eos_token": EOS,
            "pad_token": PAD,
            "additional_special_tokens": list(CHAT_MARKERS),
            "add_bos_token": False,
            "add_eos_token": False,
            "add_prefix_space": False,
            "legacy": False,
            "clean_up_tokenization_spaces": False,
        }
        if chat:
            tokenizer_config["chat_template"] = self.user_template or HELOX_CHAT_TEMPLATE
        stops = [self.eos, SPECIAL_IDS["<|end|>"]] if chat else self.eos
        generation_config = {
            "bos_token_id": self.bos,
            "eos_token_id": stops,
            "pad_token_id": self.pad,
        }
        for name, content in (
            (TOKENIZER_CONFIG, tokenizer_config),
            (GENERATION_CONFIG, generation_config),
        ):
            (folder / name).write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")


class SentencePieceTokenizer(FolderTokenizer):
    """A model folder's own `tokenizer.model`, its special ids read from the folder."""

    kind = "sentencepiece"

    def __init__(self, files: TokenizerFiles, vocab: SentencePieceVocab | None = None) -> None:
        self.vocab = vocab or SentencePieceVocab(
            files.folder / SENTENCEPIECE_FILE,
            read_sentencepiece(files.folder / SENTENCEPIECE_FILE),
        )
        processor = self.vocab.processor
        special = {i: (processor.id_to_piece(i), True) for i in self.vocab.control_ids}
        self.added = special | files.added_tokens()
        self.by_content = {content: i for i, (content, _) in self.added.items()}
        self.pattern = (
            re.compile("|".join(map(re.escape, sorted(self.by_content, key=len, reverse=True))))
            if self.by_content
            else None
        )
        declared = {"bos": processor.bos_id(), "eos": processor.eos_id(), "pad": processor.pad_id()}
        declared["unk"] = processor.unk_id()
        specials = files.special_tokens(
            self.token_id,
            self.vocab_size,
            {key: (i if i >= 0 else None) for key, i in declared.items()},
            self.piece,
        )
        adds_bos = bool(files.tokenizer_config.get("add_bos_token", False))
        super().__init__(files, specials, adds_bos)

    def with_files(self, files: TokenizerFiles) -> FolderTokenizer:
        return SentencePieceTokenizer(files, self.vocab)

    @cached_property
    def vocab_size(self) -> int:
        return max(len(self.vocab.processor), max(self.added, default=-1) + 1)

    @property
    def model_file(self) -> Path:
        return self.vocab.path

    def encode_batch(self, texts: Sequence[str], threads: int = 1) -> list[list[int]]:
        """Added tokens found in the text, sentencepiece on each stretch between them."""
        if self.pattern is None:
            return self.vocab.processor.encode(list(texts), num_threads=threads)
        layouts = [self.split(text) for text in texts]
        stretches = [part for layout in layouts for part in layout if isinstance(part, str)]
        encoded = iter(self.vocab.processor.encode(stretches, num_threads=threads))
        return [
            [i for part in layout for i in (next(encoded) if isinstance(part, str) else [part])]
            for layout in layouts
        ]

    def split(self, text: str) -> list[str | int]:
        """`text` as its stretches of plain text and the ids of the added tokens in it."""
        parts: list[str | int] = []
        start = 0
        for found in self.pattern.finditer(text):
            if found.start() > start:
                parts.append(text[start : found.start()])
            parts.append(self.by_content[found.group()])
            start = found.end()
        if start < len(text):
            parts.append(text[start:])
        return parts

    def decode(self, ids: Sequence[int]) -> str:
        """Special tokens left out; added text tokens as their text; sentencepiece between."""
        size = len(self.vocab.processor)
        pieces: list[str] = []
        run: list[int] = []
        for token_id in ids:
            content, special = self.added.get(token_id, (None, False))
            if special:
                continue
            if token_id < size and content is None:
                run.append(token_id)
                continue
            pieces.append(self.vocab.processor.decode(run))
            pieces.append(content or "")
            run = []
        return "".join([*pieces, self.vocab.processor.decode(run)])

    def token_bytes(self) -> list[int]:
        lengths = [self.vocab.piece_bytes(i) for i in range(len(self.vocab.processor))]
        lengths += [0] * (self.vocab_size - len(lengths))
        for token_id, (content, special) in self.added.items():
            lengths[token_id] = 0 if special else len(content.encode("utf-8"))
        return lengths

    def piece(self, token_id: int) -> str:
        if token_id in self.added:
            return self.added[token_id][0]
        return self.vocab.processor.id_to_piece(token_id)

    def token_id(self, content: str) -> int | None:
        if content in self.by_content:
            return self.by_content[content]
        found = self.vocab.processor.piece_to_id(content)
        return None if self.vocab.processor.is_unknown(found) else found

    @cached_property
    def special_ids(self) -> frozenset[int]:
        return frozenset(i for i, (_, special) in self.added.items() if special)

    @property
    def byte_fallback_ids(self) -> frozenset[int]:
        return self.vocab.byte_ids
