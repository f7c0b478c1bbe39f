"""Turn a folder of raw text, code, JSON(L), HTML and Parquet into a stream of `Document`s.

Whole files are read by extension: `clean.text_extensions` as text,
`clean.code_extensions` as code ("" in either list names files without an extension);
text from `.html` (`.htm`, `.xhtml`) is the page's visible text (helox.data.html_text).
A `.gz`, `.bz2`, `.xz` or `.zst` ending is unpacked first (helox.data.packed) and the
extension before it decides (`notes.txt.gz`). Text is UTF-8 (a byte order mark is
dropped), or UTF-16 or UTF-32 when it starts with their byte order mark. A source's
declared `kind` holds for all its documents but those whose record names its own; text
of no declared kind is told apart by `helox.data.kinds.detect_kind` (web, prose or docs).

`.jsonl` gives a document per line (source `path:line`, from 1) from its text key (a
dotted name such as `data.text` reaches into nested objects), a `.json` array of such
records one per record (source `path:index`, from 0), `.parquet` one per row of its text
column (source `path:row`, from 0), read one row group at a time; a record's own `kind`
and `source` fields, where present, are used. The text key and column are the source's
`text_field` when it names one, else `clean.jsonl_text_field` and `clean.parquet_text_field`.

Nothing in a raw folder stops a run: every file is either read or skipped, and a
skipped file, folder, JSONL line or Parquet row is counted in `Stats` under its
reason and logged with its path (and line or row): a file's first MAX_LOGGED_PER_FILE bad
lines or rows one by one, the rest summed up when the file ends. Files of an extension
that no list names are logged together, by extension, with the config keys that would
read them. Hidden entries (a name starting with ".") are skipped as "hidden" without a
warning, so `.git/` or a gathered corpus's `.manifest.json` never become documents.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

from helox.data.clean_config import CleanConfig
from helox.data.documents import Document, Labels, Stats
from helox.data.packed import file_extension, split_packing
from helox.data.records import read_json_array, read_jsonl, read_parquet
from helox.data.skips import NOT_AN_ARRAY, UNSUPPORTED, skip
from helox.data.text_files import read_text_file
from helox.data.walk import walk

log = logging.getLogger(__name__)


def read_documents(
    raw_dir: str | os.PathLike,
    config: CleanConfig,
    stats: Stats,
    select: Callable[[str], bool] | None = None,
    recursive: bool = True,
    labels: Labels = Labels(),
    text_field: str = "",
) -> Iterator[Document]:
    """Yield every document under `raw_dir` whose relative path `select` accepts; records'
    text under `text_field`, or where it is "", the clean section's fields."""
    root = Path(raw_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"raw corpus folder {root} does not exist or is not a folder")
    record_field = text_field or config.jsonl_text_field
    column = text_field or config.parquet_text_field
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
            skip(stats, labels.prefix + entry.relative, entry.problem, is_file=not entry.is_dir)
            continue
        packing = split_packing(entry.path.name.lower())[1]
        suffix = file_extension(entry.path.name)
        if suffix == ".jsonl":
            yield from read_jsonl(entry.path, entry.relative, record_field, stats, labels)
        elif suffix == ".json":
            yield from read_json_array(entry.path, entry.relative, record_field, stats, labels)
        elif suffix == ".parquet" and not packing:
            yield from read_parquet(entry.path, entry.relative, column, stats, labels)
        elif suffix in text_extensions or suffix in code_extensions:
            kind = "" if suffix in text_extensions else "code"
            doc = read_text_file(entry.path, entry.relative, kind, stats, labels, max_bytes)
            if doc is not None:
                yield doc
        else:
            unsupported[(suffix or "(none)") + packing] += 1
            skip(stats, labels.prefix + entry.relative, UNSUPPORTED)
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
            record_field,
        )
