"""Readers: every file under a raw folder is read or skipped with a counted, named reason.

Bad inputs covered: unreadable, non-UTF-8 and binary files, malformed JSON lines,
truncated zstd and gzip streams, broken Parquet files and row groups, lone surrogates."""

from __future__ import annotations

import gzip
import json
import logging
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from helox.data import packed
from helox.data.clean_config import CleanConfig
from helox.data.documents import Document, Labels, Stats
from helox.data.readers import read_documents
from helox.data.records import read_jsonl

PROSE = "A paragraph of plain prose, long enough to mean something.\n"
CODE = "def add(a, b):\n    return a + b\n"


def jsonl(*records: object) -> bytes:
    return b"".join(
        (item if isinstance(item, bytes) else json.dumps(item).encode()) + b"\n" for item in records
    )


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


@pytest.fixture
def raw_dir(tmp_path: Path) -> Path:
    """A messy raw folder: good files, bad bytes, bad JSON lines, zstd, nesting, links."""
    root = tmp_path / "raw"
    write(root / "a.txt", "\ufeff" + PROSE)
    write(root / "docs" / "guide.md", "# Guide\n\n" + PROSE)
    write(root / "src" / "add.py", CODE)
    write(root / "src" / "Main.JAVA", "class Main {}\n")
    write(root / "deep" / "er" / "still" / "notes.rst", PROSE)
    write(root / "bad" / "latin1.txt", "caf\u00e9 ok\nna\u00efve\n".encode("latin-1"))
    write(root / "bad" / "blob.py", b"print(1)\x00\x01\x02")
    write(root / "image.png", b"\x89PNG\r\n")
    write(root / ".hidden" / "secret.txt", PROSE)
    write(root / ".dotfile", PROSE)
    write(
        root / "data" / "records.jsonl",
        jsonl(
            {"text": "first record"},
            b"{not json",
            {"body": "no text field"},
            {"text": 42},
            ["a", "list"],
            b"",
            {"text": "x = 1\n", "kind": "code", "source": "upstream/x.py"},
            {"text": "odd kind", "kind": "poetry"},
            b'{"text": "caf\xe9"}',
            {"text": "last record", "kind": None},
        ),
    )
    compressor = zstandard.ZstdCompressor()
    write(root / "data" / "packed.jsonl.zst", compressor.compress(jsonl(*[{"text": "z"}] * 3)))
    many = compressor.compress(jsonl(*({"text": f"line {i} " + PROSE} for i in range(4000))))
    write(root / "data" / "truncated.jsonl.zst", many[: len(many) // 2])
    os.symlink("..", root / "deep" / "loop")
    os.symlink("missing.txt", root / "dangling.txt")
    return root


def read_all(root: Path, **kwargs) -> tuple[list[Document], Stats]:
    stats = Stats()
    docs = list(read_documents(root, CleanConfig(), stats, **kwargs))
    return docs, stats


def test_every_file_is_read_or_skipped_with_its_reason(raw_dir: Path) -> None:
    docs, stats = read_all(raw_dir)

    assert stats.files.seen == stats.files.read + stats.files.skipped
    assert (stats.files.read, stats.files.skipped) == (8, 5)
    assert stats.skipped_by_reason == {
        "JSON line is not an object": 1,
        "binary (NUL bytes)": 1,
        "broken symlink": 1,
        "hidden": 2,
        "kind is not one of web, prose, docs, code": 1,
        "malformed JSON": 1,
        "missing text field": 1,
        "not UTF-8": 2,
        "symlink loop or folder already read": 1,
        "text field is not a string": 1,
        "truncated or corrupt zstd stream": 1,
        "unsupported extension": 1,
    }
    entries = {(e["path"], e["line"]): e["reason"] for e in stats.skipped_entries}
    assert entries[("bad/latin1.txt", None)] == "not UTF-8"
    assert entries[("bad/blob.py", None)] == "binary (NUL bytes)"
    assert entries[("data/records.jsonl", 2)] == "malformed JSON"
    assert entries[("data/records.jsonl", 3)] == "missing text field"
    assert entries[("data/records.jsonl", 4)] == "text field is not a string"
    assert entries[("data/records.jsonl", 9)] == "not UTF-8"
    assert entries[("deep/loop", None)] == "symlink loop or folder already read"
    assert entries[("image.png", None)] == "unsupported extension"
    assert stats.skipped_total == len(stats.skipped_entries)

    truncated = [d for d in docs if d.source.startswith("data/truncated.jsonl.zst:")]
    cut = [e["line"] for e in stats.skipped_entries if e["path"] == "data/truncated.jsonl.zst"]
    assert 0 < len(truncated) < 4000
    assert cut == [len(truncated) + 1]
    assert [d.text for d in truncated] == [f"line {i} {PROSE}" for i in range(len(truncated))]


def test_documents_come_in_sorted_path_order_with_sources_and_kinds(raw_dir: Path) -> None:
    docs, _ = read_all(raw_dir)
    whole_files = [(d.source, d.kind) for d in docs if not d.source.startswith(("data/", "up"))]
    assert [(d.source, d.kind, d.text) for d in docs[:1]] == [("a.txt", "web", PROSE)]
    assert whole_files == [
        ("a.txt", "web"),  # text of no declared kind is detected: one unwrapped line
        ("deep/er/still/notes.rst", "web"),
        ("docs/guide.md", "docs"),  # a heading
        ("src/Main.JAVA", "code"),
        ("src/add.py", "code"),
    ]
    records = [(d.source, d.kind, d.text) for d in docs if d.source.startswith("data/records")]
    assert records == [
        ("data/records.jsonl:1", "web", "first record"),
        ("data/records.jsonl:10", "web", "last record"),
    ]
    assert ("upstream/x.py", "code", "x = 1\n") in [(d.source, d.kind, d.text) for d in docs]
    packed = [d.source for d in docs if d.source.startswith("data/packed")]
    assert packed == [f"data/packed.jsonl.zst:{line}" for line in (1, 2, 3)]
    assert docs == read_all(raw_dir)[0]


def test_a_source_labels_its_documents_and_its_kind_holds_but_for_records(raw_dir: Path) -> None:
    stats = Stats()
    labels = Labels(corpus="books", prefix="books/", kind="prose")
    docs = list(read_documents(raw_dir, CleanConfig(), stats, labels=labels))
    by_source = {d.source: d for d in docs}
    assert by_source["books/a.txt"].kind == "prose" and by_source["books/a.txt"].corpus == "books"
    assert by_source["books/src/add.py"].kind == "prose"  # the source says so
    assert by_source["books/upstream/x.py"].kind == "code"  # the record says so
    assert {d.corpus for d in docs} == {"books"}
    assert all(d.origin.startswith("books/") for d in docs)
    assert all(entry["path"].startswith("books/") for entry in stats.skipped_entries)


def test_skips_are_logged_with_file_and_line(raw_dir: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="helox.data.readers"):
        read_all(raw_dir)
    messages = "\n".join(record.getMessage() for record in caplog.records)
    assert "data/records.jsonl:2: skipped: malformed JSON" in messages
    assert (
        "bad/latin1.txt: skipped: not UTF-8 (first bad byte 0xe9 on line 1; convert the file "
        "to UTF-8, e.g. iconv -f CP1252 -t UTF-8)" in messages
    )
    assert "image.png" not in messages


def test_unreadable_file_is_counted_and_the_run_continues(raw_dir: Path, monkeypatch) -> None:
    real_read_bytes = Path.read_bytes

    def read_bytes(path: Path) -> bytes:
        if path.name == "guide.md":
            raise PermissionError(13, "Permission denied", str(path))
        return real_read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    docs, stats = read_all(raw_dir)
    assert stats.skipped_by_reason["unreadable"] == 1
    assert "docs/guide.md" not in {d.source for d in docs}
    assert "src/add.py" in {d.source for d in docs}


def test_select_and_non_recursive_walks(raw_dir: Path) -> None:
    docs, stats = read_all(raw_dir, recursive=False)
    assert [d.source for d in docs] == ["a.txt"]
    assert stats.skipped_by_reason == {
        "broken symlink": 1,
        "hidden": 1,
        "unsupported extension": 1,
    }

    docs, stats = read_all(raw_dir, select=lambda relative: relative.startswith("src/"))
    assert [d.source for d in docs] == ["src/Main.JAVA", "src/add.py"]
    assert stats.files.seen == 2


def test_missing_raw_folder_names_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        read_all(tmp_path / "nowhere")


def test_zstd_lines_across_frames_and_tiny_chunks(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(packed, "CHUNK_BYTES", 5)
    data = jsonl(*({"text": f"t{i}"} for i in range(300)))
    compressor = zstandard.ZstdCompressor()
    path = write(tmp_path / "two.jsonl.zst", compressor.compress(data) + compressor.compress(data))
    stats = Stats()
    docs = list(read_jsonl(path, "two.jsonl.zst", "text", stats))
    assert [d.text for d in docs] == [f"t{i}" for i in range(300)] * 2
    assert stats.skipped_total == 0


def test_custom_text_field(tmp_path: Path) -> None:
    write(tmp_path / "r.jsonl", jsonl({"content": "hello"}, {"text": "ignored"}))
    stats = Stats()
    config = CleanConfig(jsonl_text_field="content")
    docs = list(read_documents(tmp_path, config, stats))
    assert [d.text for d in docs] == ["hello"]
    assert stats.skipped_by_reason == {"missing text field": 1}


def test_gzip_jsonl_and_its_truncation(tmp_path: Path) -> None:
    data = jsonl(*({"text": f"line {i} " + PROSE} for i in range(3000)))
    packed = gzip.compress(data)
    write(tmp_path / "whole.jsonl.gz", packed)
    write(tmp_path / "cut.jsonl.gz", packed[: len(packed) // 2])
    write(tmp_path / "junk.jsonl.gz", b"not gzip at all\n")
    docs, stats = read_all(tmp_path)
    whole = [d for d in docs if d.origin == "whole.jsonl.gz"]
    cut = [d for d in docs if d.origin == "cut.jsonl.gz"]
    assert [d.source for d in whole[:2]] == ["whole.jsonl.gz:1", "whole.jsonl.gz:2"]
    assert len(whole) == 3000 and 0 < len(cut) < 3000
    assert [d.text for d in cut] == [f"line {i} {PROSE}" for i in range(len(cut))]
    entries = {(e["path"], e["line"]): e["reason"] for e in stats.skipped_entries}
    assert entries == {
        ("cut.jsonl.gz", len(cut) + 1): "truncated or corrupt gzip stream",
        ("junk.jsonl.gz", 1): "truncated or corrupt gzip stream",
    }
    assert (stats.files.read, stats.files.skipped) == (3, 0)


def test_parquet_rows_stream_by_row_group_with_their_row_as_source(tmp_path: Path) -> None:
    table = pa.table(
        {
            "body": [f"row {i} " + PROSE for i in range(10)],
            "kind": ["prose"] * 9 + ["code"],
            "other": list(range(10)),
        }
    )
    pq.write_table(table, tmp_path / "rows.parquet", row_group_size=4)
    stats = Stats()
    docs = list(read_documents(tmp_path, CleanConfig(parquet_text_field="body"), stats))
    assert [d.source for d in docs] == [f"rows.parquet:{i}" for i in range(10)]
    assert [d.text for d in docs] == table.column("body").to_pylist()
    assert [d.kind for d in docs][-2:] == ["prose", "code"]
    assert {d.origin for d in docs} == {"rows.parquet"}
    assert stats.files.read == 1 and stats.skipped_total == 0
    with pq.ParquetFile(tmp_path / "rows.parquet") as parquet:
        assert parquet.num_row_groups == 3


def test_bad_parquet_files_and_rows_are_counted(tmp_path: Path) -> None:
    pq.write_table(pa.table({"text": ["a text", None, "b text"]}), tmp_path / "nulls.parquet")
    pq.write_table(pa.table({"body": ["a"]}), tmp_path / "no_column.parquet")
    pq.write_table(pa.table({"text": [1, 2]}), tmp_path / "numbers.parquet")
    write(tmp_path / "junk.parquet", b"PAR1 and then nothing a Parquet file holds")
    whole = (tmp_path / "nulls.parquet").read_bytes()
    write(tmp_path / "cut.parquet", whole[: len(whole) // 2])
    # Three row groups of ten rows; the second one's page header is overwritten.
    values = pa.table({"text": [f"value number {i}" for i in range(30)]})
    pq.write_table(values, tmp_path / "broken_group.parquet", row_group_size=10)
    column = pq.ParquetFile(tmp_path / "broken_group.parquet").metadata.row_group(1).column(0)
    start = column.dictionary_page_offset or column.data_page_offset
    data = bytearray((tmp_path / "broken_group.parquet").read_bytes())
    data[start : start + 12] = b"\xff" * 12
    write(tmp_path / "broken_group.parquet", bytes(data))

    docs, stats = read_all(tmp_path)
    assert [d.source for d in docs if d.origin == "nulls.parquet"] == [
        "nulls.parquet:0",
        "nulls.parquet:2",
    ]
    broken = [d.text for d in docs if d.origin == "broken_group.parquet"]
    assert broken == [f"value number {i}" for i in (*range(10), *range(20, 30))]
    entries = {(e["path"], e["line"]): e["reason"] for e in stats.skipped_entries}
    assert entries == {
        ("broken_group.parquet", 10): "unreadable Parquet file or row group",
        ("cut.parquet", None): "unreadable Parquet file or row group",
        ("junk.parquet", None): "unreadable Parquet file or row group",
        ("no_column.parquet", None): "missing text field",
        ("nulls.parquet", 1): "text field is not a string",
        ("numbers.parquet", None): "text field is not a string",
    }
    assert (stats.files.read, stats.files.skipped) == (2, 4)


def test_lone_surrogates_in_a_json_line_are_not_utf8(tmp_path: Path) -> None:
    write(tmp_path / "r.jsonl", jsonl({"text": "fine"}, b'{"text": "half \\ud800 pair"}'))
    docs, stats = read_all(tmp_path)
    assert [d.text for d in docs] == ["fine"]
    assert stats.skipped_entries == [{"path": "r.jsonl", "line": 2, "reason": "not UTF-8"}]
