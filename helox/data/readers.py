"""Turn a folder of raw text, code, JSON(L), HTML and Parquet into a stream of `Document`s.

Whole files are read by extension: `clean.text_extensions` as text,
`clean.code_extensions` as code ("" in either list names files without an extension);
text from `.html` (`.htm`, `.xhtml`) is the page's visible text (helox.data.html_text).
A `.gz`, `.bz2`, `.xz` or `.zst` ending is unpacked first (helox.data.packed) and the
extension before it decides (`notes.txt.gz`). Text is UTF-8 (a byte order mark is
dropped), or UTF-16 or UTF-32 when it starts with their byte order mark. A source's
declared `kind` holds for all its documents but those whose record names its own; text
of no declared kind is told apart by `helox.data.kinds.detect_kind` (web, prose or docs).

`.jsonl` gives a document per line (source `path:line`, from 1) from its
`clean.jsonl_text_field` key (a dotted name such as `data.text` reaches into nested
objects), a `.json` array of such records one per record (source `path:index`, from 0),
`.parquet` one per row of the `clean.parquet_text_field` column (source `path:row`,
from 0), read one row group at a time; a record's own `kind` and `source` fields, where
present, are used.

Nothing in a raw folder stops a run: every file is either read or skipped, and a
skipped file, folder, JSONL line or Parquet row is counted in `Stats` under its
reason and logged with its path (and line or row): a file's first MAX_LOGGED_PER_FILE bad
lines or rows one by one, the rest summed up when the file ends. Files of an extension
that no list names are logged together, by extension, with the config keys that would
read them. Hidden entries (a name starting with ".") are skipped as "hidden" without a
warning, so `.git/` or a gathered corpus's `.manifest.json` never become documents.
"""

from __future__ import annotations

import codecs
import json
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from helox.config import CleanConfig
from helox.data.documents import KINDS, Document, Stats
from helox.data.html_text import HTML_EXTENSIONS, html_text
from helox.data.kinds import detect_kind
from helox.data.packed import (
    CorruptStreamError,
    byte_lines,
    decompressed,
    file_extension,
    split_packing,
)

log = logging.getLogger(__name__)

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
NOT_AN_ARRAY = "JSON file is not an array of records"
MISSING_TEXT = "missing text field"
TEXT_NOT_STRING = "text field is not a string"
BAD_KIND = f"kind is not one of {', '.join(KINDS)}"
BAD_ZSTD = "truncated or corrupt zstd stream"
BAD_GZIP = "truncated or corrupt gzip stream"
BAD_BZIP2 = "truncated or corrupt bzip2 stream"
BAD_XZ = "truncated or corrupt xz stream"
BAD_PARQUET = "unreadable Parquet file or row group"
TOO_LARGE = "larger than clean.max_text_length allows"

# The reason a broken stream of each packed ending is skipped for.
BAD_STREAM = {".gz": BAD_GZIP, ".bz2": BAD_BZIP2, ".xz": BAD_XZ, ".zst": BAD_ZSTD}
# Byte order marks of the encodings other than UTF-8 a text file may use (UTF-32 first:
# its little-endian mark begins with UTF-16's).
BYTE_ORDER_MARKS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# What `field_value` gives for a key a record lacks (a present key may hold None).
ABSENT = object()
# Bad lines (or rows) of one file logged one by one; the rest are summed up at its end.
MAX_LOGGED_PER_FILE = 10

# Reasons that describe the folder rather than a fault in it: counted, logged quietly
# (unsupported files and .json files of another shape are summed up once per folder).
QUIET_REASONS = frozenset({HIDDEN, UNSUPPORTED, NOT_AN_ARRAY})


class FileTooLargeError(ValueError):
    """A whole text file holds more bytes than a document of the longest length can."""


class WrongEncodingError(ValueError):
    """A JSONL file is not UTF-8 from its first byte (it carries a UTF-16 or UTF-32 mark)."""


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
        relative = prefix + printable_name(name)
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


def printable_name(name: str) -> str:
    """A file name as stats, logs and sources show it: a name that is not UTF-8 (its odd
    bytes held as surrogates by the file system encoding) shows them as `\\xe9`."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(name).decode("utf-8", "backslashreplace")
    return name


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
    # No text of max_text_length characters takes more than 4 bytes a character (and a mark).
    max_bytes = 4 * config.max_text_length + 4
    unsupported: Counter[str] = Counter()
    other_json_before = stats.skipped_by_reason.get(NOT_AN_ARRAY, 0)
    for entry in walk(root, recursive):
        if select is not None and not select(entry.relative):
            continue
        if entry.problem is not None:
            _skip(stats, labels.prefix + entry.relative, entry.problem, is_file=not entry.is_dir)
            continue
        packing = split_packing(entry.path.name.lower())[1]
        suffix = file_extension(entry.path.name)
        if suffix == ".jsonl":
            yield from read_jsonl(
                entry.path, entry.relative, config.jsonl_text_field, stats, labels
            )
        elif suffix == ".json":
            yield from read_json_array(
                entry.path, entry.relative, config.jsonl_text_field, stats, labels, packing
            )
        elif suffix == ".parquet" and not packing:
            yield from read_parquet(
                entry.path, entry.relative, config.parquet_text_field, stats, labels
            )
        elif suffix in text_extensions or suffix in code_extensions:
            kind = "" if suffix in text_extensions else "code"
            doc = read_text_file(
                entry.path, entry.relative, kind, stats, labels, packing, max_bytes
            )
            if doc is not None:
                yield doc
        else:
            unsupported[(suffix or "(none)") + packing] += 1
            _skip(stats, labels.prefix + entry.relative, UNSUPPORTED)
    if unsupported:
        log.warning(
            "%s: %d files not read, their extension in neither clean.text_extensions nor "
            "clean.code_extensions: %s; add an extension to either list to read its files "
            '("" for files without one)',
            root,
            unsupported.total(),
            ", ".join(f"{suffix} {count}" for suffix, count in unsupported.most_common()),
        )
    other_json = stats.skipped_by_reason.get(NOT_AN_ARRAY, 0) - other_json_before
    if other_json:
        log.warning(
            '%s: %d .json files not read: they hold no array of records ([{"%s": ...}, ...]), '
            "as a configuration file such as package.json does not",
            root,
            other_json,
            config.jsonl_text_field,
        )


def read_text_file(
    path: Path,
    relative: str,
    kind: str,
    stats: Stats,
    labels: Labels = Labels(),
    packing: str = "",
    max_bytes: int | None = None,
) -> Document | None:
    """Read one whole text or code file (unpacked first when `packing` names a compression
    ending), or count why it was skipped and return None; a file of over `max_bytes`
    (unpacked) is skipped unread."""
    where = labels.prefix + relative
    data = _file_bytes(path, packing, stats, where, max_bytes)
    if data is None:
        return None
    encoding = marked_encoding(data)
    if encoding is None and b"\x00" in data:
        _skip(stats, where, BINARY)
        return None
    try:
        text = data.decode(encoding or "utf-8-sig")
    except UnicodeDecodeError as error:
        if encoding is None:
            detail = _bad_byte(data, error)
        else:
            detail = f"starts with a {encoding.upper()} mark, bad byte at offset {error.start}"
        _skip(stats, where, NOT_UTF8, detail=detail)
        return None
    if encoding is not None and "\x00" in text:
        _skip(stats, where, BINARY, detail=f"NUL characters after decoding as {encoding.upper()}")
        return None
    if kind != "code" and file_extension(path.name) in HTML_EXTENSIONS:
        text = html_text(text)
    stats.file_read()
    # A declared kind holds over the extension's.
    return labels.document(text, relative, relative, "" if labels.kind else kind)


def _bad_byte(data: bytes, error: UnicodeDecodeError) -> str:
    """Where a file stops being UTF-8, and how to convert it (most such files are Latin-1
    or its Windows superset, cp1252)."""
    line = data.count(b"\n", 0, error.start) + 1
    return (
        f"first bad byte 0x{data[error.start]:02x} on line {line}; convert the file to UTF-8, "
        "e.g. iconv -f CP1252 -t UTF-8"
    )


def marked_encoding(data: bytes) -> str | None:
    """The encoding ("utf-16" or "utf-32") whose byte order mark `data` starts with, or None."""
    for mark, encoding in BYTE_ORDER_MARKS:
        if data.startswith(mark):
            return encoding
    return None


def read_json_array(
    path: Path,
    relative: str,
    text_field: str,
    stats: Stats,
    labels: Labels = Labels(),
    packing: str = "",
) -> Iterator[Document]:
    """Yield a document per record of a `.json` file that holds an array of them (source
    `path:index`, from 0), read whole; its records are judged as JSONL lines are."""
    where = labels.prefix + relative
    data = _file_bytes(path, packing, stats, where)
    if data is None:
        return
    try:
        records = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as error:
        _skip(stats, where, NOT_UTF8, detail=_bad_byte(data, error))
        return
    except json.JSONDecodeError as error:
        detail = f"{error.msg}: line {error.lineno}, column {error.colno}"
        _skip(stats, where, MALFORMED_JSON, detail=detail)
        return
    except RecursionError:
        _skip(stats, where, TOO_DEEP, detail=f"{len(data)} bytes")
        return
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records[:1]):
        shape = type(records[0] if isinstance(records, list) else records).__name__
        _skip(stats, where, NOT_AN_ARRAY, detail=f"it holds a {shape}")
        return
    stats.file_read()
    skips = SkipLog(stats, where, "records")
    for index, record in enumerate(records):
        doc = _record_document(record, index, relative, text_field, skips, labels)
        if doc is not None:
            yield doc
    skips.close()


def _file_bytes(
    path: Path, packing: str, stats: Stats, where: str, max_bytes: int | None = None
) -> bytes | None:
    """A whole file's bytes, unpacked when `packing` names a compression ending; None,
    counted as a skipped file, when it cannot be read or unpacked or exceeds `max_bytes`."""
    try:
        if packing:
            with open(path, "rb") as handle:
                return _unpacked_bytes(handle, packing, max_bytes)
        if max_bytes is not None and (size := path.stat().st_size) > max_bytes:
            raise FileTooLargeError(f"{size:,} bytes > {max_bytes:,}")
        return path.read_bytes()
    except FileTooLargeError as error:
        detail = (
            f"{error}: cut it into files, or JSONL records, of at most "
            "clean.max_text_length characters each"
        )
        _skip(stats, where, TOO_LARGE, detail=detail)
    except CorruptStreamError as error:
        _skip(stats, where, BAD_STREAM[packing], detail=str(error))
    except OSError as error:
        _skip(stats, where, UNREADABLE, detail=str(error))
    return None


def _unpacked_bytes(handle: BinaryIO, packing: str, max_bytes: int | None) -> bytes:
    """The whole unpacked content of a stream; FileTooLargeError past `max_bytes`."""
    chunks, size = [], 0
    for chunk in decompressed(handle, packing):
        size += len(chunk)
        if max_bytes is not None and size > max_bytes:
            raise FileTooLargeError(f"over {max_bytes:,} bytes unpacked")
        chunks.append(chunk)
    return b"".join(chunks)


def read_jsonl(
    path: Path, relative: str, text_field: str, stats: Stats, labels: Labels = Labels()
) -> Iterator[Document]:
    """Yield a document per good line of a `.jsonl` file, plain or packed (`.gz`, `.bz2`,
    `.xz`, `.zst`).

    A bad line is counted and passed over; a stream that breaks off (truncated or
    corrupt compression, a read error) ends the file there, counted at the next line, and
    so does a UTF-16 or UTF-32 mark at its start (JSON Lines are UTF-8).
    """
    where = labels.prefix + relative
    packing = split_packing(path.name.lower())[1]
    skips = SkipLog(stats, where, "lines")
    opened = False
    line_number = 0
    try:
        with open(path, "rb") as handle:
            opened = True
            stats.file_read()
            lines = byte_lines(decompressed(handle, packing)) if packing else handle
            for line_number, raw_line in enumerate(lines, start=1):
                doc = _parse_line(raw_line, line_number, relative, text_field, skips, labels)
                if doc is not None:
                    yield doc
    except CorruptStreamError as error:
        _skip(stats, where, BAD_STREAM[packing], line=line_number + 1, detail=str(error))
    except WrongEncodingError as error:
        _skip(stats, where, NOT_UTF8, line=line_number, detail=str(error))
    except OSError as error:
        line = line_number + 1 if opened else None
        _skip(stats, where, UNREADABLE, line=line, detail=str(error))
    skips.close()


class SkipLog:
    """Counts one file's bad lines (or rows) into `stats`, logs the first
    MAX_LOGGED_PER_FILE of them one by one and, at `close`, how many more there were."""

    def __init__(self, stats: Stats, where: str, unit: str):
        self.stats = stats
        self.where = where
        self.unit = unit
        self.logged = 0
        self.unlogged: Counter[str] = Counter()

    def skip(self, reason: str, line: int, detail: str = "") -> None:
        quiet = self.logged >= MAX_LOGGED_PER_FILE
        _skip(self.stats, self.where, reason, line=line, detail=detail, quiet=quiet)
        if quiet:
            self.unlogged[reason] += 1
        else:
            self.logged += 1

    def close(self) -> None:
        if self.unlogged:
            log.warning(
                "%s: %d more %s skipped (not logged one by one): %s",
                self.where,
                self.unlogged.total(),
                self.unit,
                ", ".join(f"{reason} {count}" for reason, count in self.unlogged.most_common()),
            )


def read_parquet(
    path: Path, relative: str, text_field: str, stats: Stats, labels: Labels = Labels()
) -> Iterator[Document]:
    """Yield a document per row of a Parquet file's text column, one row group at a time.

    A file that cannot be opened or lacks a string `text_field` column is skipped
    whole; an unreadable row group is counted at its first row and passed over.
    """
    where = labels.prefix + relative
    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as error:
        _skip(stats, where, BAD_PARQUET, detail=str(error))
        return
    with parquet:
        schema = parquet.schema_arrow
        if text_field not in schema.names:
            detail = (
                f"no {text_field!r} column; it has {_names(schema.names)}: "
                "clean.parquet_text_field names the text column"
            )
            _skip(stats, where, MISSING_TEXT, detail=detail)
            return
        text_type = schema.field(text_field).type
        if not (pa.types.is_string(text_type) or pa.types.is_large_string(text_type)):
            _skip(stats, where, TEXT_NOT_STRING, detail=f"{text_field!r} holds {text_type}")
            return
        stats.file_read()
        skips = SkipLog(stats, where, "rows")
        extra = [name for name in ("kind", "source") if name in schema.names and name != text_field]
        first_row = 0
        for group in range(parquet.num_row_groups):
            try:
                table = parquet.read_row_group(group, columns=[text_field, *extra])
                columns = {name: table.column(name).to_pylist() for name in [text_field, *extra]}
            except (OSError, pa.ArrowException, UnicodeDecodeError) as error:
                skips.skip(BAD_PARQUET, first_row, str(error))
            else:
                for offset, text in enumerate(columns[text_field]):
                    record = {name: columns[name][offset] for name in extra}
                    row = first_row + offset
                    doc = _document(text, record, relative, row, text_field, skips, labels)
                    if doc is not None:
                        yield doc
            first_row += parquet.metadata.row_group(group).num_rows
        skips.close()


def _parse_line(
    raw_line: bytes,
    line_number: int,
    relative: str,
    text_field: str,
    skips: SkipLog,
    labels: Labels,
) -> Document | None:
    def skip(reason: str, detail: str = "") -> None:
        if line_number == 1 and raw_line.lstrip().startswith(b"["):
            detail += "; a file holding one JSON array of records is read when named .json"
        skips.skip(reason, line_number, detail)

    encoding = marked_encoding(raw_line) if line_number == 1 else None
    if encoding is not None:
        raise WrongEncodingError(
            f"starts with a {encoding.upper()} byte order mark; JSON Lines must be UTF-8: "
            f"convert it (iconv -f {encoding.upper()} -t UTF-8)"
        )
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
    return _record_document(record, line_number, relative, text_field, skips, labels)


def _record_document(
    record: Any, line: int, relative: str, text_field: str, skips: SkipLog, labels: Labels
) -> Document | None:
    """The document of a parsed JSON record, or None, counted, if it is no object or has
    no text."""
    if not isinstance(record, dict):
        skips.skip(NOT_AN_OBJECT, line, type(record).__name__)
        return None
    text = field_value(record, text_field)
    if text is ABSENT:
        detail = (
            f"no {text_field!r} key; it has {_names(record)}: "
            "clean.jsonl_text_field names the text key"
        )
        skips.skip(MISSING_TEXT, line, detail)
        return None
    return _document(text, record, relative, line, text_field, skips, labels)


def field_value(record: dict[str, Any], name: str) -> Any:
    """`record[name]`, else, for a dotted name, the value down its path; ABSENT if neither."""
    if name in record:
        return record[name]
    value: Any = record
    for key in name.split("."):
        if not isinstance(value, dict) or key not in value:
            return ABSENT
        value = value[key]
    return value


def _names(names: Iterable[str], shown: int = 8) -> str:
    """A short list of a record's keys or a table's columns for a message."""
    listed = [repr(name) for name in names]
    if not listed:
        return "none"
    more = f" and {len(listed) - shown} more" if len(listed) > shown else ""
    return ", ".join(listed[:shown]) + more


def _document(
    text: Any,
    record: dict[str, Any],
    relative: str,
    line: int,
    text_field: str,
    skips: SkipLog,
    labels: Labels,
) -> Document | None:
    """A record's document (its own `kind` and `source` if set), or None, counted, if invalid."""

    def skip(reason: str, detail: str) -> None:
        skips.skip(reason, line, detail)

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


def _skip(
    stats: Stats,
    relative: str,
    reason: str,
    line: int | None = None,
    detail: str = "",
    is_file: bool = True,
    quiet: bool = False,
) -> None:
    """Count a skipped file (or folder, or line) and log it with its path and line
    (at debug level when `quiet` or when the reason is one of QUIET_REASONS)."""
    if is_file and line is None:
        stats.skip_file(relative, reason)
    else:
        stats.skip_entry(relative, reason, line)
    where = relative if line is None else f"{relative}:{line}"
    message = f"{where}: skipped: {reason}" + (f" ({detail})" if detail else "")
    log.log(logging.DEBUG if quiet or reason in QUIET_REASONS else logging.WARNING, message)
