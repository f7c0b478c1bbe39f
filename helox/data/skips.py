"""Why a file, folder, JSONL line or Parquet row was not read: the reasons, and counting
and logging each skip with its path (and line or row)."""

from __future__ import annotations

import logging
from collections import Counter

from helox.data.documents import KINDS, Stats

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


# Bad lines (or rows) of one file logged one by one; the rest are summed up at its end.
MAX_LOGGED_PER_FILE = 10


# Reasons that describe the folder rather than a fault in it: counted, logged quietly
# (unsupported files and .json files of another shape are summed up once per folder).
QUIET_REASONS = frozenset({HIDDEN, UNSUPPORTED, NOT_AN_ARRAY})


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
        skip(self.stats, self.where, reason, line=line, detail=detail, quiet=quiet)
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


def skip(
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
