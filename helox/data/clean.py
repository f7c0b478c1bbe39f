"""The clean stage: raw folders → readers → cleaning steps → one part of cleaned JSONL.zst.

The raw input is one folder (`corpus.raw_dir`) or the folders of `corpus.sources`; with
several sources each document carries its source's name (`corpus`) and its file name is
prefixed with it, and a file's part is a hash of that prefixed name.

`clean_part` is what the Snakemake rule and the CLI call: kept documents go to the
part's output, every removed one to its rejected file with the step, rule and
detail that removed it, and the counts (per step, rule, kind and raw file) to its
stats JSON. The guide's `TextCleaner` and `DataCollector` (helox.guide) run the same
readers and steps.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from helox.config import CleanConfig, CorpusConfig, SourceConfig
from helox.data.documents import Document, Stats
from helox.data.filters import apply_steps, build_steps
from helox.data.readers import Entry, Labels, read_documents, walk
from helox.io import JsonlWriter, write_json
from helox.progress import ProgressBar

log = logging.getLogger(__name__)


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
        yield from read_documents(source.path, config, stats, select=chosen, labels=labels)


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


def clean_part(
    raw: RawInput,
    part: int,
    parts: int,
    config: CleanConfig,
    output: str | os.PathLike,
    rejected_output: str | os.PathLike,
    stats_output: str | os.PathLike,
) -> Stats:
    """Clean the raw files of one part; write kept and rejected documents and the stats JSON.

    `raw` is a folder or the list of `corpus.sources`.
    """
    if not 0 <= part < parts:
        raise ValueError(f"part {part} is out of range for {parts} parts (0 to {parts - 1})")
    sources = as_sources(raw)
    raw_dir = ", ".join(source.path for source in sources)
    steps = build_steps(config)
    stats = Stats()
    stats.register([step.name for step in steps])
    sizes = source_file_sizes(sources, lambda relative: part_of(relative, parts) == part)
    bar = ProgressBar(
        f"cleaning part {part} of {raw_dir}",
        sum(sizes.values()),
        "MB",
        scale=1e6,
        note=lambda: f"{stats.flow.documents_in:,} docs",
    )
    unfinished = 0

    def select(relative: str) -> bool:
        """Take the files of this part; count the previous one as read when the next begins."""
        nonlocal unfinished
        if part_of(relative, parts) != part:
            return False
        bar.update(unfinished)
        unfinished = sizes.get(relative, 0)
        return True

    documents = read_sources(sources, config, stats, select=select)
    with JsonlWriter(output) as kept, JsonlWriter(rejected_output) as rejected:
        for doc in documents:
            result, dropped = apply_steps(doc, steps, stats)
            if dropped is None:
                kept.write(result.record())
            else:
                rejected.write({**result.record(), **dropped.record()})
    bar.update(unfinished)
    bar.close()
    write_json(stats_output, {"part": part, "parts": parts, **stats.to_dict()})
    log.info(
        "part %d/%d of %s: kept %d of %d documents (%d bytes of %d); %d files read, %d skipped",
        part,
        parts,
        raw_dir,
        stats.flow.documents_out,
        stats.flow.documents_in,
        stats.flow.bytes_out,
        stats.flow.bytes_in,
        stats.files.read,
        stats.files.skipped,
    )
    removed = [
        f"{name} {counts.documents}" for name, counts in stats.removed.items() if counts.documents
    ]
    log.info("part %d/%d removed by step: %s", part, parts, ", ".join(removed) or "none")
    return stats
