"""Reading records: a document per line of a `.jsonl` file, per record of a `.json` array,
per row of a `.parquet` file's text column; a bad line or row is counted and passed over."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from helox.data.documents import Document, Labels, Stats
from helox.data.kinds import KINDS
from helox.data.packed import CorruptStreamError, byte_lines, decompressed, split_packing
from helox.data.skips import (
    BAD_KIND,
    BAD_PARQUET,
    BAD_STREAM,
    MALFORMED_JSON,
    MISSING_TEXT,
    NOT_AN_ARRAY,
    NOT_AN_OBJECT,
    NOT_UTF8,
    TEXT_NOT_STRING,
    TOO_DEEP,
    UNREADABLE,
    SkipLog,
    skip,
)
from helox.data.text_files import bad_byte, file_bytes, marked_encoding

# What `field_value` gives for a key a record lacks (a present key may hold None).
ABSENT = object()


class WrongEncodingError(ValueError):
    """A JSONL file is not UTF-8 from its first byte (it carries a UTF-16 or UTF-32 mark)."""


def read_json_array(
    path: Path, relative: str, text_field: str, stats: Stats, labels: Labels = Labels()
) -> Iterator[Document]:
    """Yield a document per record of a `.json` file that holds an array of them (source
    `path:index`, from 0), read whole; its records are judged as JSONL lines are."""
    where = labels.prefix + relative
    data = file_bytes(path, stats, where)
    if data is None:
        return
    try:
        records = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as error:
        skip(stats, where, NOT_UTF8, detail=bad_byte(data, error))
        return
    except json.JSONDecodeError as error:
        detail = f"{error.msg}: line {error.lineno}, column {error.colno}"
        skip(stats, where, MALFORMED_JSON, detail=detail)
        return
    except RecursionError:
        skip(stats, where, TOO_DEEP, detail=f"{len(data)} bytes")
        return
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records[:1]):
        shape = type(records[0] if isinstance(records, list) else records).__name__
        skip(stats, where, NOT_AN_ARRAY, detail=f"it holds a {shape}")
        return
    stats.file_read()
    skips = SkipLog(stats, where, "records")
    for index, record in enumerate(records):
        doc = _record_document(record, index, relative, text_field, skips, labels)
        if doc is not None:
            yield doc
    skips.close()


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
        skip(stats, where, BAD_STREAM[packing], line=line_number + 1, detail=str(error))
    except WrongEncodingError as error:
        skip(stats, where, NOT_UTF8, line=line_number, detail=str(error))
    except OSError as error:
        line = line_number + 1 if opened else None
        skip(stats, where, UNREADABLE, line=line, detail=str(error))
    skips.close()


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
        skip(stats, where, BAD_PARQUET, detail=str(error))
        return
    with parquet:
        schema = parquet.schema_arrow
        if text_field not in schema.names:
            detail = (
                f"no {text_field!r} column; it has {_names(schema.names)}: the source's "
                "text_field (corpus.sources) or clean.parquet_text_field names the text column"
            )
            skip(stats, where, MISSING_TEXT, detail=detail)
            return
        text_type = schema.field(text_field).type
        if not (pa.types.is_string(text_type) or pa.types.is_large_string(text_type)):
            skip(stats, where, TEXT_NOT_STRING, detail=f"{text_field!r} holds {text_type}")
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
            f"no {text_field!r} key; it has {_names(record)}: the source's text_field "
            "(corpus.sources) or clean.jsonl_text_field names the text key"
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
