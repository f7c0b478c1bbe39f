"""The entries of a raw folder, depth-first in sorted name order, each folder once: a file to
read, or a file or folder to skip with its reason."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from helox.data.skips import (
    BROKEN_LINK,
    HIDDEN,
    REPEATED_FOLDER,
    SPECIAL_FILE,
    UNREADABLE,
)

log = logging.getLogger(__name__)


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
