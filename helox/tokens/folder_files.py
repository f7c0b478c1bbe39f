"""A model folder's own tokenizer: its files, what its configs say, and carrying them on.

A folder brings `tokenizer.json` or a SentencePiece `tokenizer.model`, and configs that name
its special tokens: `tokenizer_config.json` and `special_tokens_map.json` by text,
`generation_config.json` and `config.json` by id. Which id is BOS, EOS or padding is read
from them in that order, never assumed; a folder that names no pad token pads with EOS
(padding is masked out of every loss). Generation stops at EOS and at generation_config's
`eos_token_id` list.

`FolderTokenizer` is what both kinds of a folder's own tokenizer share: tokens added in
`tokenizer_config.json`'s `added_tokens_decoder` (as transformers adds them), the chat
template (`chat_template.jinja` before `tokenizer_config.json`'s, as transformers reads
them), and writing the files into the next model folder verbatim, or rewritten where Helox
added chat markers or a template.
"""

from __future__ import annotations

import copy
import json
import shutil
from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helox.tokens.interface import SpecialTokens, Tokenizer

TOKENIZER_CONFIG = "tokenizer_config.json"
SPECIAL_TOKENS_MAP = "special_tokens_map.json"
GENERATION_CONFIG = "generation_config.json"
MODEL_CONFIG = "config.json"  # read for ids only; the model's own file, never carried
TEMPLATE_FILE = "chat_template.jinja"
# Every file that makes up a tokenizer, carried from folder to folder as the source has them.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    TOKENIZER_CONFIG,
    SPECIAL_TOKENS_MAP,
    TEMPLATE_FILE,
    GENERATION_CONFIG,
)
SPECIAL_KEYS = ("bos", "eos", "pad", "unk")


def read_config(path: Path) -> dict[str, Any]:
    """A JSON object file, {} where it is absent; a message naming the file otherwise."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ValueError(f"{path}: cannot read it ({error.strerror})") from None
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 (byte {error.start})") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def token_text(value: Any) -> str | None:
    """A special token as configs write it: a string, or `{"content": ...}` (AddedToken)."""
    return value.get("content") if isinstance(value, dict) else value


@dataclass
class TokenizerFiles:
    """The configs of a tokenizer's folder, as read; rewritten ones are kept in memory."""

    folder: Path
    configs: dict[str, dict[str, Any]]
    template_file: str | None
    rewritten: set[str] = field(default_factory=set)

    @classmethod
    def read(cls, folder: Path) -> TokenizerFiles:
        names = (TOKENIZER_CONFIG, SPECIAL_TOKENS_MAP, GENERATION_CONFIG, MODEL_CONFIG)
        configs = {name: read_config(folder / name) for name in names}
        template_path = folder / TEMPLATE_FILE
        template = template_path.read_text(encoding="utf-8") if template_path.is_file() else None
        return cls(folder, configs, template)

    @property
    def tokenizer_config(self) -> dict[str, Any]:
        return self.configs[TOKENIZER_CONFIG]

    def chat_template(self) -> str | None:
        """`chat_template.jinja`, else `tokenizer_config.json`'s (its default one of several)."""
        if self.template_file is not None:
            return self.template_file
        template = self.tokenizer_config.get("chat_template")
        if isinstance(template, list):
            named = {entry.get("name"): entry.get("template") for entry in template}
            template = named.get("default")
        return template if isinstance(template, str) else None

    def added_tokens(self) -> dict[int, tuple[str, bool]]:
        """{id: (content, special)} of `tokenizer_config.json`'s `added_tokens_decoder`."""
        where = self.folder / TOKENIZER_CONFIG
        found = {}
        for key, entry in self.tokenizer_config.get("added_tokens_decoder", {}).items():
            if not key.isdigit() or not isinstance(entry, dict) or "content" not in entry:
                raise ValueError(f"{where}: added_tokens_decoder entry {key!r} is malformed")
            found[int(key)] = (entry["content"], bool(entry.get("special", True)))
        return found

    def special_tokens(
        self,
        token_id: Callable[[str], int | None],
        vocab_size: int,
        defaults: dict[str, int | None],
        piece: Callable[[int], str],
    ) -> SpecialTokens:
        """The special ids the configs name (by text, then by id), else `defaults` (those
        the vocabulary file itself declares); a name the vocabulary lacks, or an id past
        it, is refused naming the file and key."""
        ids: dict[str, int | None] = {}
        named: dict[str, str] = {}
        for key in SPECIAL_KEYS:
            by_text = self.named_token(key)
            if by_text is not None:
                content, where = by_text
                ids[key] = None if content is None else token_id(content)
                if content is not None and ids[key] is None:
                    raise ValueError(
                        f"{where}: {key}_token {content!r} is not in the vocabulary of "
                        f"{self.folder}"
                    )
                if content is not None:
                    named[f"{key}_token"] = content
                continue
            by_id = self.numbered_tokens(f"{key}_token_id", vocab_size)
            ids[key] = by_id[0] if by_id else defaults.get(key)
            if ids[key] is not None and not by_id:
                named[f"{key}_token"] = piece(ids[key])
        if ids["eos"] is None:
            raise ValueError(
                f"{self.folder}: no end-of-text token: neither {TOKENIZER_CONFIG} nor "
                f"{SPECIAL_TOKENS_MAP} names an eos_token, nor {GENERATION_CONFIG} or "
                f"{MODEL_CONFIG} an eos_token_id"
            )
        stops = self.numbered_tokens("eos_token_id", vocab_size)
        return SpecialTokens(
            eos=ids["eos"],
            pad=ids["eos"] if ids["pad"] is None else ids["pad"],
            bos=ids["bos"],
            unk=ids["unk"],
            stops=tuple(stops),
            named=named,
        )

    def named_token(self, key: str) -> tuple[str | None, Path] | None:
        """(text or None, file) where a config names `<key>_token`; None where none does."""
        for name in (TOKENIZER_CONFIG, SPECIAL_TOKENS_MAP):
            if f"{key}_token" in self.configs[name]:
                return token_text(self.configs[name][f"{key}_token"]), self.folder / name
        return None

    def numbered_tokens(self, key: str, vocab_size: int) -> list[int]:
        """The ids `generation_config.json` (else `config.json`) gives `key`, as a list."""
        for name in (GENERATION_CONFIG, MODEL_CONFIG):
            value = self.configs[name].get(key)
            if value is None:
                continue
            values = value if isinstance(value, list) else [value]
            if not all(isinstance(v, int) and 0 <= v < vocab_size for v in values):
                raise ValueError(
                    f"{self.folder / name}: {key} {value!r} is not an id of the "
                    f"vocabulary of {vocab_size}"
                )
            return values
        return []

    def with_added_tokens(self, first_id: int, contents: Sequence[str]) -> TokenizerFiles:
        """A copy whose `added_tokens_decoder` also holds `contents` from `first_id` on."""
        files = copy.deepcopy(self)
        decoder = files.tokenizer_config.setdefault("added_tokens_decoder", {})
        for offset, content in enumerate(contents):
            decoder[str(first_id + offset)] = {
                "content": content,
                "lstrip": False,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": True,
            }
        files.rewritten.add(TOKENIZER_CONFIG)
        return files

    def with_chat_template(self, template: str, stops: Sequence[int]) -> TokenizerFiles:
        """A copy that brings `template` (in `tokenizer_config.json`, as a folder without
        `chat_template.jinja` does) and stops generation at `stops` too."""
        files = copy.deepcopy(self)
        files.tokenizer_config["chat_template"] = template
        files.template_file = None
        generation = files.configs[GENERATION_CONFIG]
        known = generation.get("eos_token_id", [])
        known = known if isinstance(known, list) else [known]
        generation["eos_token_id"] = list(dict.fromkeys([*known, *stops]))
        files.rewritten |= {TOKENIZER_CONFIG, GENERATION_CONFIG}
        return files

    def write(self, folder: Path, kept: Sequence[str]) -> None:
        """Copy the files named in `kept` from the source folder verbatim; write the
        configs rewritten here instead."""
        for name in kept:
            if name in self.rewritten:
                continue
            if (self.folder / name).is_file() and not (
                name == TEMPLATE_FILE and self.template_file is None
            ):
                shutil.copyfile(self.folder / name, folder / name)
        for name in sorted(self.rewritten):
            text = json.dumps(self.configs[name], indent=2, ensure_ascii=False)
            (folder / name).write_text(text + "\n", encoding="utf-8")


class FolderTokenizer(Tokenizer):
    """A model folder's own tokenizer: the kinds that read their special ids, added tokens
    and chat template from the folder's configs."""

    def __init__(self, files: TokenizerFiles, specials: SpecialTokens, adds_bos: bool) -> None:
        super().__init__(files.folder, specials, adds_bos)
        self.files = files

    @property
    def chat_template(self) -> str | None:
        return self.files.chat_template()

    @abstractmethod
    def with_files(self, files: TokenizerFiles) -> FolderTokenizer:
        """The same kind, its vocabulary file as loaded, over rewritten configs."""

    def with_added_tokens(self, contents: Sequence[str]) -> Tokenizer:
        return self.with_files(self.files.with_added_tokens(self.vocab_size, contents))

    def with_chat_template(self, template: str, stop: int | None) -> Tokenizer:
        stops = [self.eos, *self.specials.stops] + ([] if stop is None else [stop])
        return self.with_files(self.files.with_chat_template(template, stops))

    def write_files(self, folder: Path, chat: bool) -> None:
        self.files.write(folder, TOKENIZER_FILES)
