"""Reading one whole text or code file: unpacked, decoded (UTF-8, or UTF-16 or UTF-32 after
their byte order mark), its HTML reduced to visible text, or skipped with the reason."""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import BinaryIO

from helox.data.documents import Document, Labels, Stats
from helox.data.html_text import HTML_EXTENSIONS, html_text
from helox.data.packed import CorruptStreamError, decompressed, file_extension, split_packing
from helox.data.skips import BAD_STREAM, BINARY, NOT_UTF8, TOO_LARGE, UNREADABLE, skip

# Byte order marks of the encodings other than UTF-8 a text file may use (UTF-32 first:
# its little-endian mark begins with UTF-16's).
BYTE_ORDER_MARKS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


class FileTooLargeError(ValueError):
    """A whole text file holds more bytes than a document of the longest length can."""


def read_text_file(
    path: Path,
    relative: str,
    kind: str,
    stats: Stats,
    labels: Labels = Labels(),
    max_bytes: int | None = None,
) -> Document | None:
    """Read one whole text or code file (unpacked first when its name has a compression
    ending), or count why it was skipped and return None; a file of over `max_bytes`
    (unpacked) is skipped unread."""
    where = labels.prefix + relative
    data = file_bytes(path, stats, where, max_bytes)
    if data is None:
        return None
    encoding = marked_encoding(data)
    if encoding is None and b"\x00" in data:
        skip(stats, where, BINARY)
        return None
    try:
        text = data.decode(encoding or "utf-8-sig")
    except UnicodeDecodeError as error:
        if encoding is None:
            detail = bad_byte(data, error)
        else:
            detail = f"starts with a {encoding.upper()} mark, bad byte at offset {error.start}"
        skip(stats, where, NOT_UTF8, detail=detail)
        return None
    if encoding is not None and "\x00" in text:
        skip(stats, where, BINARY, detail=f"NUL characters after decoding as {encoding.upper()}")
        return None
    if kind != "code" and file_extension(path.name) in HTML_EXTENSIONS:
        text = html_text(text)
    stats.file_read()
    # A declared kind holds over the extension's.
    return labels.document(text, relative, relative, "" if labels.kind else kind)


def bad_byte(data: bytes, error: UnicodeDecodeError) -> str:
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


def file_bytes(path: Path, stats: Stats, where: str, max_bytes: int | None = None) -> bytes | None:
    """A whole file's bytes, unpacked when its name has a compression ending; None, counted
    as a skipped file, when it cannot be read or unpacked or exceeds `max_bytes`."""
    packing = split_packing(path.name.lower())[1]
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
        skip(stats, where, TOO_LARGE, detail=detail)
    except CorruptStreamError as error:
        skip(stats, where, BAD_STREAM[packing], detail=str(error))
    except OSError as error:
        skip(stats, where, UNREADABLE, detail=str(error))
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
