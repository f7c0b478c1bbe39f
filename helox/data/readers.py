"""Turn a folder of raw text, code, JSONL and Parquet into a stream of `Document`s.

Whole files are read by extension: `clean.text_extensions` as text,
`clean.code_extensions` as code. A source's declared `kind` holds for all its documents
but those whose record names its own; text of no declared kind is told apart by
`helox.data.kinds.detect_kind` (web, prose or docs). `.jsonl`, `.jsonl.gz` and
`.jsonl.zst` give a document per line (source `path:line`, from 1), `.parquet` one per row of the
`clean.parquet_text_field` column (source `path:row`, from 0), read one row group
at a time; a record's own `kind` and `source` fields, where present, are used.

Nothing in a raw folder stops a run: every file is either read or skipped, and a
skipped file, folder, JSONL line or Parquet row is counted in `Stats` under its
reason and logged with its path (and line or row). Hidden entries (a name starting with ".") are
skipped as "hidden" without a warning, so `.git/` or a gathered corpus's
`.manifest.json` never become documents.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

from helox.config import CleanConfig
from helox.data.documents import KINDS, Document, Stats
from helox.data.kinds import detect_kind

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20

HIDDEN = "hidden"
UNSUPPORTED = "unsupported extension"
UNREADABLE = "unreadable"
NOT_UTF8 = "not UTF-8"
BINARY = "binary (NUL bytes)"
BROKEN_LINK = "broken symlink"
SPECIAL_FILE = "not a regular file"
REPEATED_FOLDER = "symlink loop or folder already read"
MALFORMED_JSON = "malformed JSON"
TOO_DEEP = "JSON nested too deeply"
NOT_AN_OBJECT = "JSON line is not an object"
MISSING_TEXT = "missing text field"
TEXT_NOT_STRING = "text field is not a string"
BAD_KIND = f"kind is not one of {', '.join(KINDS)}"
BAD_ZSTD = "truncated or corrupt zstd stream"
BAD_GZIP = "truncated or corrupt gzip stream"
BAD_PARQUET = "unreadable Parquet file or row group"

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst")

# Reasons that describe the folder rather than a fault in it: counted, logged quietly.
QUIET_REASONS = frozenset({HIDDEN, UNSUPPORTED})


class TruncatedZstdError(ValueError):
    """A zstd stream ended inside a frame."""


@dataclass(frozen=True)
class Labels:
    """What a source gives each of its documents: its name, a prefix for the file names
    (the name and a slash when several sources mix), and its declared kind ("" detects)."""

    corpus: str = ""
    prefix: str = ""
    kind: str = ""

    def document(self, text: str, source: str, relative: str, kind: str = "") -> Document:
        """A document of this source; `kind` is its record's own, else the source's, else
        code for a code file (passed in as "code"), else detected."""
        chosen = kind or self.kind or detect_kind(text)
        return Document(text, self.prefix + source, chosen, self.prefix + relative, self.corpus)


@dataclass(frozen=True)
class Entry:
    """A file to read, or a file or folder to skip for `problem`."""

    path: Path
    relative: str
    problem: str | None = None
    is_dir: bool = False


def walk(root: Path, recursive: bool = True) -> Iterator[Entry]:
    """Yield the entries under `root` depth-first in sorted name order, each folder once."""
    seen_folders: set[tuple[int, int]] = set()
    root_stat = root.stat()
    seen_folders.add((root_stat.st_dev, root_stat.st_ino))
    yield from _walk_folder(root, "", seen_folders, recursive)


def _walk_folder(
    folder: Path, prefix: str, seen_folders: set[tuple[int, int]], recursive: bool
) -> Iterator[Entry]:
    try:
        with os.scandir(folder) as scan:
            names = sorted(entry.name for entry in scan)
    except OSError as error:
        log.warning("%s: skipped folder: %s (%s)", folder, UNREADABLE, error)
        yield Entry(folder, prefix.rstrip("/") or ".", UNREADABLE, is_dir=True)
        return
    for name in names:
        path = folder / name
        relative = prefix + name
        try:
            is_dir = path.is_dir()
            is_file = not is_dir and path.is_file()
        except OSError:
            yield Entry(path, relative, UNREADABLE)
            continue
        if is_dir and not recursive:
            continue
        if name.startswith("."):
            yield Entry(path, relative, HIDDEN, is_dir=is_dir)
            continue
        if is_dir:
            try:
                info = path.stat()
            except OSError:
                yield Entry(path, relative, UNREADABLE, is_dir=True)
                continue
            key = (info.st_dev, info.st_ino)
            if key in seen_folders:
                yield Entry(path, relative, REPEATED_FOLDER, is_dir=True)
                continue
            seen_folders.add(key)
            yield from _walk_folder(path, relative + "/", seen_folders, recursive)
        elif is_file:
            yield Entry(path, relative)
        elif path.is_symlink():
            yield Entry(path, relative, BROKEN_LINK)
        else:
            yield Entry(path, relative, SPECIAL_FILE)


def read_documents(
    raw_dir: str | os.PathLike,
    config: CleanConfig,
    stats: Stats,
    select: Callable[[str], bool] | None = None,
    recursive: bool = True,
    labels: Labels = Labels(),
) -> Iterator[Document]:
    """Yield every document under `raw_dir` whose relative path `select` accepts."""
    root = Path(raw_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"raw corpus folder {root} does not exist or is not a folder")
    text_extensions = {ext.lower() for ext in config.text_extensions}
    code_extensions = {ext.lower() for ext in config.code_extensions}
    for entry in walk(root, recursive):
        if select is not None and not select(entry.relative):
            continue
        if entry.problem is not None:
            _skip(stats, labels.prefix + entry.relative, entry.problem, is_file=not entry.is_dir)
            continue
        name = entry.path.name.lower()
        suffix = os.path.splitext(name)[1]
        if name.endswith(JSONL_SUFFIXES):
            yield from read_jsonl(
                entry.path, entry.relative, config.jsonl_text_field, stats, labels
            )
        elif name.endswith(".parquet"):
            yield from read_parquet(
                entry.path, entry.relative, config.parquet_text_field, stats, labels
            )
        elif suffix in text_extensions or suffix in code_extensions:
            kind = "" if suffix in text_extensions else "code"
            doc = read_text_file(entry.path, entry.relative, kind, stats, labels)
            if doc is not None:
                yield doc
        else:
            _skip(stats, labels.prefix + entry.relative, UNSUPPORTED)


def read_text_file(
    path: Path, relative: str, kind: str, stats: Stats, labels: Labels = Labels()
) -> Document | None:
    """Read one whole text or code file, or count why it was skipped and return None."""
    where = labels.prefix + relative
    try:
        data = path.read_bytes()
    except OSError as error:
        _skip(stats, where, UNREADABLE, detail=str(error))
        return None
    if b"\x00" in data:
        _skip(stats, where, BINARY)
        return None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        _skip(stats, where, NOT_UTF8, detail=f"first bad byte on line {line}")
        return None
    stats.file_read()
    # A declared kind holds over the extension's.
    return labels.document(text, relative, relative, "" if labels.kind else kind)


def read_jsonl(
    path: Path, relative: str, text_field: str, stats: Stats, labels: Labels = Labels()
) -> Iterator[Document]:
    """Yield a document per good line of a `.jsonl`, `.jsonl.gz` or `.jsonl.zst` file.

    A bad line is counted and passed over; a stream that breaks off (truncated or
    corrupt compression, a read error) ends the file there, counted at the next line.
    """
    opened = False
    line_number = 0
    try:
        with open(path, "rb") as handle:
            opened = True
            stats.file_read()
            for line_number, raw_line in enumerate(_raw_lines(handle, path.name), start=1):
                doc = _parse_line(raw_line, line_number, relative, text_field, stats, labels)
                if doc is not None:
                    yield doc
    except (TruncatedZstdError, zstandard.ZstdError) as error:
        _skip(stats, labels.prefix + relative, BAD_ZSTD, line=line_number + 1, detail=str(error))
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        _skip(stats, labels.prefix + relative, BAD_GZIP, line=line_number + 1, detail=str(error))
    except OSError as error:
        line = line_number + 1 if opened else None
        _skip(stats, labels.prefix + relative, UNREADABLE, line=line, detail=str(error))


def _raw_lines(handle: BinaryIO, name: str) -> Iterable[bytes]:
    """The byte lines of a plain, gzip or zstd JSONL file."""
    name = name.lower()
    if name.endswith(".zst"):
        return _zstd_lines(handle)
    if name.endswith(".gz"):
        return gzip.GzipFile(fileobj=handle, mode="rb")
    return handle


def read_parquet(
    path: Path, relative: str, text_field: str, stats: Stats, labels: Labels = Labels()
) -> Iterator[Document]:
    """Yield a document per row of a Parquet file's text column, one row group at a time.

    A file that cannot be opened or lacks a string `text_field` column is skipped
    whole; an unreadable row group is counted at its first row and passed over.
    """
    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as error:
        _skip(stats, labels.prefix + relative, BAD_PARQUET, detail=str(error))
        return
    with parquet:
        schema = parquet.schema_arrow
        if text_field not in schema.names:
            _skip(stats, labels.prefix + relative, MISSING_TEXT, detail=f"no {text_field!r} column")
            return
        text_type = schema.field(text_field).type
        if not (pa.types.is_string(text_type) or pa.types.is_large_string(text_type)):
            _skip(
                stats,
                labels.prefix + relative,
                TEXT_NOT_STRING,
                detail=f"{text_field!r} holds {text_type}",
            )
            return
        stats.file_read()
        extra = [name for name in ("kind", "source") if name in schema.names and name != text_field]
        first_row = 0
        for group in range(parquet.num_row_groups):
            try:
                table = parquet.read_row_group(group, columns=[text_field, *extra])
                columns = {name: table.column(name).to_pylist() for name in [text_field, *extra]}
            except (OSError, pa.ArrowException, UnicodeDecodeError) as error:
                _skip(
                    stats, labels.prefix + relative, BAD_PARQUET, line=first_row, detail=str(error)
                )
            else:
                for offset, text in enumerate(columns[text_field]):
                    record = {name: columns[name][offset] for name in extra}
                    row = first_row + offset
                    doc = _document(text, record, relative, row, text_field, stats, labels)
                    if doc is not None:
                        yield doc
            first_row += parquet.metadata.row_group(group).num_rows


def _parse_line(
    raw_line: bytes,
    line_number: int,
    relative: str,
    text_field: str,
    stats: Stats,
    labels: Labels,
) -> Document | None:
    def skip(reason: str, detail: str = "") -> None:
        _skip(stats, labels.prefix + relative, reason, line=line_number, detail=detail)

    try:
        line = raw_line.decode("utf-8")
    except UnicodeDecodeError as error:
        skip(NOT_UTF8, str(error))
        return None
    if line_number == 1:
        line = line.removeprefix("\ufeff")
    if not line.strip():
        return None
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        skip(MALFORMED_JSON, str(error))
        return None
    except RecursionError:
        skip(TOO_DEEP, f"{len(line)} characters")
        return None
    if not isinstance(record, dict):
        skip(NOT_AN_OBJECT, type(record).__name__)
        return None
    if text_field not in record:
        skip(MISSING_TEXT, f"no {text_field!r} key")
        return None
    return _document(record[text_field], record, relative, line_number, text_field, stats, labels)


def _document(
    text: Any,
    record: dict[str, Any],
    relative: str,
    line: int,
    text_field: str,
    stats: Stats,
    labels: Labels,
) -> Document | None:
    """A record's document (its own `kind` and `source` if set), or None, counted, if invalid."""

    def skip(reason: str, detail: str) -> None:
        _skip(stats, labels.prefix + relative, reason, line=line, detail=detail)

    if not isinstance(text, str):
        skip(TEXT_NOT_STRING, f"{text_field!r} holds {type(text).__name__}")
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        skip(NOT_UTF8, f"{text_field!r} holds a lone surrogate ({error.reason})")
        return None
    kind = record.get("kind") or ""
    if kind and kind not in KINDS:
        skip(BAD_KIND, repr(kind))
        return None
    source = record.get("source")
    if not isinstance(source, str) or not source:
        source = f"{relative}:{line}"
    return labels.document(text, source, relative, kind)


def _zstd_lines(handle: BinaryIO) -> Iterator[bytes]:
    """Yield the lines of a zstd stream; raise TruncatedZstdError if it stops inside a frame."""
    pending: list[bytes] = []
    for chunk in _zstd_chunks(handle):
        *complete, tail = chunk.split(b"\n")
        if complete:
            pending.append(complete[0])
            yield b"".join(pending) + b"\n"
            for line in complete[1:]:
                yield line + b"\n"
            pending = []
        if tail:
            pending.append(tail)
    if pending:
        yield b"".join(pending)


def _zstd_chunks(handle: BinaryIO) -> Iterator[bytes]:
    decompressor = zstandard.ZstdDecompressor()
    frame = decompressor.decompressobj()
    inside_frame = False
    while compressed := handle.read(CHUNK_BYTES):
        while compressed:
            inside_frame = True
            output = frame.decompress(compressed)
            if output:
                yield output
            if not frame.eof:
                break
            compressed = frame.unused_data
            frame = decompressor.decompressobj()
            inside_frame = False
    if inside_frame:
        raise TruncatedZstdError("the stream ends inside a zstd frame")


def _skip(
    stats: Stats,
    relative: str,
    reason: str,
    line: int | None = None,
    detail: str = "",
    is_file: bool = True,
) -> None:
    """Count a skipped file (or folder, or line) and log it with its path and line."""
    if is_file and line is None:
        stats.skip_file(relative, reason)
    else:
        stats.skip_entry(relative, reason, line)
    where = relative if line is None else f"{relative}:{line}"
    message = f"{where}: skipped: {reason}" + (f" ({detail})" if detail else "")
    log.log(logging.DEBUG if reason in QUIET_REASONS else logging.WARNING, message)
