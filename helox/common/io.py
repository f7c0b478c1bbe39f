"""File I/O shared by every stage: atomic writes, JSON, JSONL.zst, hashing."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
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


def fsync_file(path: Path) -> None:
    """Flush a file's contents to disk."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def name_output(error: Exception, target: Path) -> None:
    """Make `error` name the output it interrupted: as an OSError's file name, else in a note."""
    if isinstance(error, OSError) and error.errno is not None and error.filename is None:
        error.filename = str(target)
    else:
        error.add_note(f"while writing {target}")


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only on success.

    Works for files and folders alike: whatever the caller creates at the yielded
    path replaces `target` in one rename, so a reader never sees a half-written output.
    A failure (a full disk, say) leaves `target` as it was, deletes the temporary path
    and names `target` in the error.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    tmp.rmdir()
    try:
        yield tmp
        if tmp.is_file():
            fsync_file(tmp)
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except Exception as error:
        name_output(error, target)
        raise
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


def finish_atomic(
    context: contextlib.AbstractContextManager, close: Callable[[], None], success: bool
) -> None:
    """End an `atomic_path` context whose file `close` flushes and closes.

    If `close` and the caller both succeeded, the file is renamed onto its target; otherwise
    it is deleted. An error from `close` (the last block meeting a full disk, say) names the
    target, and is raised unless the caller is already failing with an error of its own.
    """
    try:
        close()
    except Exception as error:
        context.__exit__(type(error), error, error.__traceback__)
        if success:
            raise
        return
    if success:
        context.__exit__(None, None, None)
    else:
        context.__exit__(RuntimeError, RuntimeError("aborted"), None)


class JsonlWriter:
    """Write one JSON object a line, zstd-compressed when the name ends in `.zst`; atomic."""

    def __init__(self, path: str | os.PathLike, level: int = ZSTD_LEVEL):
        self.path = Path(path)
        self._context = atomic_path(path)
        self._tmp = self._context.__enter__()
        self._raw = open(self._tmp, "wb")  # noqa: SIM115 - closed through self._text in close()
        stream = self._raw
        if str(path).endswith(".zst"):
            stream = zstandard.ZstdCompressor(level=level).stream_writer(self._raw)
        self._text = io.TextIOWrapper(stream, encoding="utf-8")
        self.count = 0

    def write(self, record: dict) -> None:
        try:
            self._text.write(json.dumps(record, ensure_ascii=False) + "\n")
        except OSError as error:
            name_output(error, self.path)
            raise
        self.count += 1

    def close(self, success: bool = True) -> None:
        """Rename the finished file onto its name; without `success`, delete it instead."""
        finish_atomic(self._context, self._close_streams, success)

    def _close_streams(self) -> None:
        try:
            self._text.close()
        finally:
            self._raw.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(success=exc_type is None)


def iter_jsonl(
    path: str | os.PathLike, on_read: Callable[[int], None] | None = None
) -> Iterator[dict]:
    """Yield the objects of a JSONL file (`.zst`-compressed or plain) written by Helox.

    `on_read`, when given, is called with the bytes of the file read since its last call.
    """
    with open(path, "rb") as raw:
        stream = (
            zstandard.ZstdDecompressor().stream_reader(raw) if str(path).endswith(".zst") else raw
        )
        position = 0
        for line in io.TextIOWrapper(stream, encoding="utf-8"):
            if line.strip():
                yield json.loads(line)
            if on_read is not None and (read := raw.tell()) > position:
                on_read(read - position)
                position = read


def iter_texts(paths: Iterable[str | os.PathLike]) -> Iterator[str]:
    """Yield the `text` field of every record in the given JSONL files, in order."""
    for path in paths:
        for record in iter_jsonl(path):
            yield record["text"]
