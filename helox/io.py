"""File I/O shared by every stage: atomic writes, JSON, JSONL.zst, hashing."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import zstandard

ZSTD_LEVEL = 3


def fsync_dir(path: Path) -> None:
    """Flush a directory entry to disk so a rename inside it survives a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only on success.

    Works for files and folders alike: whatever the caller creates at the yielded
    path replaces `target` in one rename, so a reader never sees a half-written output.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    tmp.rmdir()
    try:
        yield tmp
        if tmp.is_file():
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(tmp, target)
        fsync_dir(target.parent)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write `data` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_files(paths: Iterable[str | os.PathLike]) -> str:
    """One digest over several files, in the order given."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


class JsonlWriter:
    """Write one JSON object a line, zstd-compressed when the name ends in `.zst`; atomic."""

    def __init__(self, path: str | os.PathLike, level: int = ZSTD_LEVEL):
        self._context = atomic_path(path)
        self._tmp = self._context.__enter__()
        self._raw = open(self._tmp, "wb")  # noqa: SIM115 - closed through self._text in close()
        stream = self._raw
        if str(path).endswith(".zst"):
            stream = zstandard.ZstdCompressor(level=level).stream_writer(self._raw)
        self._text = io.TextIOWrapper(stream, encoding="utf-8")
        self.count = 0

    def write(self, record: dict) -> None:
        self._text.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.count += 1

    def close(self, success: bool = True) -> None:
        self._text.close()
        if success:
            self._context.__exit__(None, None, None)
        else:
            self._context.__exit__(RuntimeError, RuntimeError("aborted"), None)

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(success=exc_type is None)


def iter_jsonl(path: str | os.PathLike) -> Iterator[dict]:
    """Yield the objects of a JSONL file (`.zst`-compressed or plain) written by Helox."""
    with open(path, "rb") as raw:
        stream = (
            zstandard.ZstdDecompressor().stream_reader(raw) if str(path).endswith(".zst") else raw
        )
        for line in io.TextIOWrapper(stream, encoding="utf-8"):
            if line.strip():
                yield json.loads(line)


def iter_texts(paths: Iterable[str | os.PathLike]) -> Iterator[str]:
    """Yield the `text` field of every record in the given JSONL files, in order."""
    for path in paths:
        for record in iter_jsonl(path):
            yield record["text"]
