"""Packed files: a `.gz`, `.bz2`, `.xz` or `.zst` ending, unpacked as a stream.

The extension before the ending says what the file holds (`notes.txt.gz` is text); a
stream may hold several members or frames one after another (`cat a.gz b.gz`), and one
that is corrupt or cut short raises CorruptStreamError after the bytes before the fault.
"""

from __future__ import annotations

import bz2
import io
import lzma
import os
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO

import zstandard

CHUNK_BYTES = 1 << 20

# What makes a fresh decompressor for each packed ending.
DECOMPRESSORS: dict[str, Callable[[], Any]] = {
    ".gz": lambda: zlib.decompressobj(wbits=31),
    ".bz2": bz2.BZ2Decompressor,
    ".xz": lzma.LZMADecompressor,
    ".zst": lambda: zstandard.ZstdDecompressor().decompressobj(),
}
DECOMPRESSION_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError, zstandard.ZstdError)


class CorruptStreamError(ValueError):
    """A compressed stream is corrupt or ends inside a frame."""


def split_packing(name: str) -> tuple[str, str]:
    """A file name without its compression ending, and that ending ("" when unpacked)."""
    stem, ending = os.path.splitext(name)
    return (stem, ending) if ending in DECOMPRESSORS else (name, "")


def file_extension(name: str) -> str:
    """The lower-case extension that says how a file is read: the one before a compression
    ending ("notes.TXT.gz" → ".txt"), "" for none."""
    return os.path.splitext(split_packing(name.lower())[0])[1]


def byte_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Yield the lines of a stream of byte chunks, each with its newline but the last."""
    pending: list[bytes] = []
    for chunk in chunks:
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


def decompressed(handle: BinaryIO, packing: str) -> Iterator[bytes]:
    """Yield the unpacked bytes of a `packing` (".gz", ".bz2", ".xz", ".zst") stream, one
    member or frame after another; raise CorruptStreamError if it is corrupt or cut short."""
    new_decompressor = DECOMPRESSORS[packing]
    decompressor = new_decompressor()
    inside_frame = False
    while compressed := handle.read(CHUNK_BYTES):
        while compressed:
            inside_frame = True
            try:
                output = decompressor.decompress(compressed)
            except DECOMPRESSION_ERRORS as error:
                raise CorruptStreamError(str(error) or type(error).__name__) from error
            if output:
                yield output
            if not decompressor.eof:
                break
            compressed = decompressor.unused_data
            decompressor = new_decompressor()
            inside_frame = False
    if inside_frame:
        raise CorruptStreamError(f"the stream ends inside a {packing[1:]} frame")


class UnpackedStream(io.RawIOBase):
    """A packed file read as its unpacked bytes, for readers that want a file object."""

    def __init__(self, path: str | os.PathLike, packing: str):
        self._file = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._chunks = decompressed(self._file, packing)
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    def close(self) -> None:
        self._file.close()
        super().close()


def open_unpacked(path: str | os.PathLike) -> io.BufferedReader:
    """`path` opened for reading bytes, unpacked when its name ends in a compression ending;
    a corrupt or cut-short stream raises CorruptStreamError where the fault is read."""
    packing = split_packing(str(path))[1]
    if not packing:
        return open(path, "rb")
    return io.BufferedReader(UnpackedStream(path, packing), CHUNK_BYTES)
