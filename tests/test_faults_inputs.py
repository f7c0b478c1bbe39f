"""Hostile raw inputs: the workflow runs through clean and dedup, and the stats account for
every file (read, or skipped with its reason), every bad line and every document (kept, or
rejected with its reason), with counts that add up exactly."""

from __future__ import annotations

import gzip
import json
import os
import random
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import zstandard
from conftest import stdlib_sources
from test_workflow import snakemake

from helox.common.io import iter_jsonl, read_json
from helox.data import skips
from helox.data.documents import Stats

PARTS = 2
HUGE_BYTES = 50_000_000
DEDUP_OUTPUTS = [f"results/dedup/part-{part}.jsonl.zst" for part in range(PARTS)]


@dataclass
class Expected:
    """What the clean stage must report about a folder, built alongside the folder."""

    files: dict[str, str] = field(default_factory=dict)  # path: "read" or the skip reason
    documents: dict[str, int] = field(default_factory=dict)  # path: documents it yields
    entries: Counter = field(default_factory=Counter)  # (path, line, reason) of each skip

    def read(self, relative: str, documents: int, bad_lines: dict[int, str] | None = None):
        self.files[relative] = "read"
        self.documents[relative] = documents
        for line, reason in (bad_lines or {}).items():
            self.entries[(relative, line, reason)] += 1

    def skip(self, relative: str, reason: str, is_file: bool = True) -> None:
        if is_file:
            self.files[relative] = reason
        self.entries[(relative, None, reason)] += 1


def write(root: Path, relative: str, data: bytes) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def jsonl(*records: object) -> bytes:
    return b"".join(json.dumps(record).encode() + b"\n" for record in records)


def build_hostile_corpus(root: Path) -> Expected:
    """Good sources among every kind of bad file, bad line and bad folder entry."""
    expected = Expected()
    sources = stdlib_sources(8)
    for name, text in sources:
        write(root, f"good/{name}", text.encode())
        expected.read(f"good/{name}", 1)
    text = sources[0][1]
    for add in (add_binary_and_encodings, add_jsonl, add_empty_and_huge, add_links_and_specials):
        add(root, expected, text)
    return expected


def add_binary_and_encodings(root: Path, expected: Expected, text: str) -> None:
    noise = random.Random(9).randbytes(4096)
    write(root, "binary/noise.bin", noise)
    expected.skip("binary/noise.bin", skips.UNSUPPORTED)
    write(root, "binary/noise.txt", noise + b"\x00")
    expected.skip("binary/noise.txt", skips.BINARY)
    write(root, "binary/noise.py", noise.replace(b"\x00", b"\xff") + b"\xff")
    expected.skip("binary/noise.py", skips.NOT_UTF8)
    write(root, "binary/noise.parquet", noise)
    expected.skip("binary/noise.parquet", skips.BAD_PARQUET)

    write(root, "encodings/latin1.txt", "Café crème, résumé naïve.\n".encode("latin-1"))
    expected.skip("encodings/latin1.txt", skips.NOT_UTF8)
    write(root, "encodings/cp1252.rst", "\u201csmart quotes\u201d \u2013 dash\n".encode("cp1252"))
    expected.skip("encodings/cp1252.rst", skips.NOT_UTF8)
    write(root, "encodings/utf16.md", text.encode("utf-16"))  # its byte order mark tells it
    expected.read("encodings/utf16.md", 1)
    write(root, "encodings/utf16-unmarked.md", text.encode("utf-16-le"))
    expected.skip("encodings/utf16-unmarked.md", skips.BINARY)
    write(root, "encodings/mixed.txt", text.encode() + "Größe\n".encode("latin-1"))
    expected.skip("encodings/mixed.txt", skips.NOT_UTF8)
    write(root, "encodings/bom.txt", text.encode("utf-8-sig"))
    expected.read("encodings/bom.txt", 1)


def add_jsonl(root: Path, expected: Expected, text: str) -> None:
    """Truncated compressed JSONL, and JSONL with every kind of bad line."""
    # Three zstd frames of ten short documents (one block each), the last cut in half:
    # the twenty documents of the whole frames come through.
    records = [{"text": f"document {i}: " + "lorem ipsum " * 20} for i in range(30)]
    frames = [zstandard.ZstdCompressor().compress(jsonl(*records[i : i + 10])) for i in (0, 10, 20)]
    write(root, "jsonl/truncated.jsonl.zst", b"".join(frames)[: -len(frames[-1]) // 2])
    expected.read("jsonl/truncated.jsonl.zst", 20, {21: skips.BAD_ZSTD})
    compressed = gzip.compress(jsonl(*records))
    truncated = compressed[: len(compressed) // 2]
    write(root, "jsonl/truncated.jsonl.gz", truncated)
    whole_lines = zlib.decompressobj(wbits=31).decompress(truncated).count(b"\n")
    expected.read("jsonl/truncated.jsonl.gz", whole_lines, {whole_lines + 1: skips.BAD_GZIP})

    lines_and_faults = [
        (jsonl({"text": text, "source": "first"}), None),
        (b'{"text": "an unterminated string\n', skips.MALFORMED_JSON),
        (b"[1, 2, 3]\n", skips.NOT_AN_OBJECT),
        (jsonl({"text": 42}), skips.TEXT_NOT_STRING),
        (jsonl({"content": "no text field"}), skips.MISSING_TEXT),
        (jsonl({"text": text, "kind": "poetry"}), skips.BAD_KIND),
        (b"\n", None),  # a blank line is no document
        (b'{"text": "\xff\xfe not UTF-8"}\n', skips.NOT_UTF8),
        (b'{"text": "\\ud800 a lone surrogate"}\n', skips.NOT_UTF8),
        (jsonl({"text": None}), skips.TEXT_NOT_STRING),
        (jsonl("just a string"), skips.NOT_AN_OBJECT),
        (jsonl({"text": ["a", "list"]}), skips.TEXT_NOT_STRING),
        (b'{"text": NaN}\n', skips.TEXT_NOT_STRING),
        (jsonl({"text": text + "\n# the last good line", "kind": "code"}), None),
        (b'{"text": "no newline at the end, and cut', skips.MALFORMED_JSON),
    ]
    write(root, "jsonl/broken.jsonl", b"".join(line for line, _ in lines_and_faults))
    faults = {number: fault for number, (_, fault) in enumerate(lines_and_faults, 1) if fault}
    expected.read("jsonl/broken.jsonl", 2, faults)

    depth = 100_000
    nested = [
        b'{"text": ' + b"[" * depth + b"]" * depth + b"}\n",
        b'{"a": ' * depth + b"1" + b"}" * depth + b"\n",
        jsonl({"text": text, "meta": json.loads('{"m": ' * 200 + "1" + "}" * 200)}),
    ]
    write(root, "jsonl/nested.jsonl", b"".join(nested))
    expected.read("jsonl/nested.jsonl", 1, {1: skips.TOO_DEEP, 2: skips.TOO_DEEP})


def add_empty_and_huge(root: Path, expected: Expected, text: str) -> None:
    for name in ("zero.txt", "zero.py"):
        write(root, f"empty/{name}", b"")
        expected.read(f"empty/{name}", 1)  # an empty document, which the empty filter removes
    for name in ("zero.jsonl", "zero.jsonl.zst", "zero.jsonl.gz"):
        write(root, f"empty/{name}", b"")
        expected.read(f"empty/{name}", 0)
    with open(root / "huge.txt", "wb") as handle:
        handle.write(b"word " * (HUGE_BYTES // 5))
    expected.read("huge.txt", 1)


def add_links_and_specials(root: Path, expected: Expected, text: str) -> None:
    """Symlink loops, broken links, a file that cannot be read, a pipe, odd names."""
    loops = root / "loops"
    loops.mkdir()
    (loops / "self").symlink_to(".")
    expected.skip("loops/self", skips.REPEATED_FOLDER, is_file=False)
    (loops / "up").symlink_to("..")
    expected.skip("loops/up", skips.REPEATED_FOLDER, is_file=False)
    (loops / "a.txt").symlink_to("b.txt")
    (loops / "b.txt").symlink_to("a.txt")
    (loops / "dangling.md").symlink_to("nowhere.md")
    for name in ("a.txt", "b.txt", "dangling.md"):
        expected.skip(f"loops/{name}", skips.BROKEN_LINK)

    # Reading /proc/self/mem from its start fails with EIO, even for root, whom chmod 000
    # would not stop: a file that opens and then cannot be read.
    special = root / "special"
    special.mkdir()
    (special / "mem.txt").symlink_to("/proc/self/mem")
    expected.skip("special/mem.txt", skips.UNREADABLE)
    (special / "mem.jsonl").symlink_to("/proc/self/mem")
    expected.read("special/mem.jsonl", 0, {1: skips.UNREADABLE})
    os.mkfifo(special / "pipe.txt")
    expected.skip("special/pipe.txt", skips.SPECIAL_FILE)
    write(root, "special/folder.jsonl/inside.md", text.encode())
    expected.read("special/folder.jsonl/inside.md", 1)
    write(root, ".hidden.txt", text.encode())
    expected.skip(".hidden.txt", skips.HIDDEN)
    write(root, "notes.docx", text.encode())
    expected.skip("notes.docx", skips.UNSUPPORTED)


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory) -> tuple[Path, Expected]:
    """The workflow run through dedup on the hostile folder."""
    workdir = tmp_path_factory.mktemp("hostile")
    raw = workdir / "raw"
    expected = build_hostile_corpus(raw)
    overlay = {"corpus": {"raw_dir": str(raw)}, "clean": {"parts": PARTS}}
    result = snakemake(workdir, "results/dedup/stats.json", *DEDUP_OUTPUTS, overlay=overlay)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return workdir, expected


def clean_totals(workdir: Path) -> Stats:
    """The clean stage's stats, summed over its parts."""
    total = Stats()
    for part in range(PARTS):
        total = total + Stats.from_dict(
            read_json(workdir / f"results/clean/part-{part}.stats.json")
        )
    return total


def test_every_file_is_read_or_skipped_with_its_reason(hostile_run) -> None:
    workdir, expected = hostile_run
    stats = clean_totals(workdir)
    skipped_files = {path: reason for path, reason in expected.files.items() if reason != "read"}
    assert stats.files.seen == len(expected.files)
    assert stats.files.read == len(expected.files) - len(skipped_files)
    assert stats.files.skipped == len(skipped_files)
    assert stats.skipped_omitted == 0
    found = Counter((e["path"], e["line"], e["reason"]) for e in stats.skipped_entries)
    assert found == expected.entries
    assert stats.skipped_by_reason == dict(Counter(reason for _, _, reason in found.elements()))


def test_every_document_is_kept_or_rejected_with_its_reason(hostile_run) -> None:
    workdir, expected = hostile_run
    stats = clean_totals(workdir)
    assert stats.flow.documents_in == sum(expected.documents.values())
    for path, documents in expected.documents.items():
        if documents:
            assert stats.sources[path].documents_in == documents, path
    removed = sum(counts.documents for counts in stats.removed.values())
    assert stats.flow.documents_in == stats.flow.documents_out + removed
    changed = sum(counts.bytes for counts in stats.modified.values())
    removed_bytes = sum(counts.bytes for counts in stats.removed.values())
    assert stats.flow.bytes_in + changed == stats.flow.bytes_out + removed_bytes

    kept, rejected = [], []
    for part in range(PARTS):
        kept += iter_jsonl(workdir / f"results/clean/part-{part}.jsonl.zst")
        rejected += iter_jsonl(workdir / f"results/clean/rejected/part-{part}.jsonl.zst")
    assert len(kept) == stats.flow.documents_out > 0
    by_reason = Counter(record["reason"] for record in rejected)
    assert by_reason == {step: c.documents for step, c in stats.removed.items() if c.documents}
    assert all(record["rule"] for record in rejected)
    huge = next(r for r in rejected if r["source"] == "huge.txt")
    assert huge["reason"] == "max_text_length" and len(huge["text"]) >= HUGE_BYTES - 1


def test_dedup_accounts_for_every_cleaned_document(hostile_run) -> None:
    workdir, _ = hostile_run
    dedup = read_json(workdir / "results/dedup/stats.json")
    assert dedup["documents_in"] == clean_totals(workdir).flow.documents_out
    removed = sum(counts["documents"] for counts in dedup["removed"].values())
    assert dedup["documents_in"] == dedup["documents_out"] + removed
    survivors = sum(1 for path in DEDUP_OUTPUTS for _ in iter_jsonl(workdir / path))
    assert survivors == dedup["documents_out"]
