"""The corpus: its sources (one raw folder, or several mixed by weight), the part each raw
file falls in, and reading every source's documents in turn.

With several sources each document carries its source's name (`corpus`) and its file name
is prefixed with it, and a file's part is a hash of that prefixed name.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helox.common.config_files import ConfigError, build_sections
from helox.data.clean_config import CleanConfig
from helox.data.documents import Document, Labels, Stats
from helox.data.readers import read_documents
from helox.data.walk import Entry, walk

# The kinds of text a source may declare ("" = detect per document); see helox.data.kinds.
SOURCE_KINDS = ("", "web", "prose", "docs", "code")


@dataclass
class SourceConfig:
    """One source of a mixture: a raw folder, its share of the training tokens, its kind."""

    name: str = ""
    path: str = ""
    # The source's share of pretraining's rows, relative to the other sources' weights.
    weight: float = 1.0
    # web, prose, docs or code for every document of the source; "" detects it per document.
    kind: str = ""
    # The text key of its .jsonl and .json records and the text column of its .parquet files
    # (`content` in The Stack, `raw_content` in RedPajama, `text` in FineWeb); "" = the clean
    # section's jsonl_text_field and parquet_text_field.
    text_field: str = ""

    def __post_init__(self) -> None:
        if self.kind not in SOURCE_KINDS:
            raise ConfigError(
                f"corpus source {self.name!r}: kind {self.kind!r} is not one of "
                f"{', '.join(map(repr, SOURCE_KINDS))}"
            )
        if not self.weight > 0:
            raise ConfigError(f"corpus source {self.name!r}: weight {self.weight} must be > 0")


@dataclass
class CorpusConfig:
    raw_dir: str = ""  # a folder of text, code and JSONL; "" = the Python standard library
    stdlib_max_bytes: int = 8_000_000  # the byte budget when gathering the standard library
    sources: list[SourceConfig] = field(default_factory=list)

    def __post_init__(self) -> None:
        build_sections(self, "corpus")


def part_of(relative_path: str, parts: int) -> int:
    """The part a raw file belongs to: a stable hash of its path relative to the raw folder."""
    digest = hashlib.blake2b(relative_path.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % parts


def file_sizes(raw_dir: str | os.PathLike, select: Callable[[str], bool]) -> dict[str, int]:
    """The size of every readable file under `raw_dir` that `select` takes, by relative path."""
    root = Path(raw_dir)
    if not root.is_dir():
        return {}
    return {
        entry.relative: entry.path.stat().st_size
        for entry in walk(root)
        if entry.problem is None and not entry.is_dir and select(entry.relative)
    }


DEFAULT_SOURCE = "raw"


RawInput = str | os.PathLike | Sequence[SourceConfig]


def as_sources(raw: RawInput) -> list[SourceConfig]:
    """The sources of a raw input: a folder is one source named DEFAULT_SOURCE."""
    if isinstance(raw, str | os.PathLike):
        return [SourceConfig(name=DEFAULT_SOURCE, path=os.fspath(raw))]
    return list(raw)


def corpus_sources(corpus: Mapping[str, Any], default_dir: str) -> list[SourceConfig]:
    """The sources a `corpus` section names: its `sources`, else `raw_dir` (or `default_dir`
    when that is empty) as one source named DEFAULT_SOURCE."""
    sources = CorpusConfig(**{key: corpus[key] for key in ("sources",) if key in corpus}).sources
    return sources or [SourceConfig(DEFAULT_SOURCE, corpus.get("raw_dir") or default_dir)]


def source_labels(sources: Sequence[SourceConfig]) -> list[Labels]:
    """Each source's labels; file names get the source's name as a prefix when several mix."""
    several = len(sources) > 1
    return [
        Labels(source.name, f"{source.name}/" if several else "", source.kind) for source in sources
    ]


def read_sources(
    sources: Sequence[SourceConfig],
    config: CleanConfig,
    stats: Stats,
    select: Callable[[str], bool] | None = None,
) -> Iterator[Document]:
    """The documents of every source in turn; `select` sees each file's prefixed name."""
    for source, labels in zip(sources, source_labels(sources), strict=True):
        if not Path(source.path).is_dir():
            raise FileNotFoundError(
                f"corpus source {source.name!r}: raw folder {source.path} does not exist "
                "or is not a folder"
            )
        chosen = None if select is None else _prefixed(select, labels.prefix)
        yield from read_documents(
            source.path, config, stats, select=chosen, labels=labels, text_field=source.text_field
        )


def _prefixed(select: Callable[[str], bool], prefix: str) -> Callable[[str], bool]:
    return lambda relative: select(prefix + relative)


def raw_listings(sources: Sequence[SourceConfig], parts: int) -> dict[int, str]:
    """Per part, a digest of the raw entries it reads: each file's prefixed name, size and
    modification time, each skipped entry's reason. As a rule parameter it reruns a part
    when a file of it is added, removed or edited, which the folders' own times miss below
    their top level."""
    digests = [hashlib.blake2b(digest_size=16) for _ in range(parts)]
    for source, labels in zip(sources, source_labels(sources), strict=True):
        if not Path(source.path).is_dir():
            continue
        for entry in walk(Path(source.path)):
            name = labels.prefix + entry.relative
            line = f"{name}\0{_entry_state(entry)}\n"
            digests[part_of(name, parts)].update(line.encode("utf-8"))
    return {part: digest.hexdigest() for part, digest in enumerate(digests)}


def _entry_state(entry: Entry) -> str:
    """A file's size and modification time, or why the readers skip the entry."""
    if entry.problem is not None:
        return entry.problem
    try:
        info = entry.path.stat()
    except OSError as error:
        return f"unreadable: {error.strerror}"
    return f"{info.st_size} {info.st_mtime_ns}"


def source_file_sizes(
    sources: Sequence[SourceConfig], select: Callable[[str], bool]
) -> dict[str, int]:
    """`file_sizes` of every source, by prefixed name."""
    sizes = {}
    for source, labels in zip(sources, source_labels(sources), strict=True):
        found = file_sizes(source.path, _prefixed(select, labels.prefix))
        sizes.update({labels.prefix + name: size for name, size in found.items()})
    return sizes
