"""Clean stage: steps, counts that add up, parts that cover every file once, the guide's faces."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import zstandard

from helox.config import CleanConfig
from helox.data.clean import DataCollector, TextCleaner, clean_part, part_of
from helox.data.documents import Document, Stats
from helox.data.filters import (
    MaxLengthFilter,
    MinLengthFilter,
    Step,
    UnicodeNormalizer,
    UrlFilter,
    WhitespaceNormalizer,
    apply_steps,
    build_steps,
)
from helox.io import iter_jsonl, read_json

PARAGRAPH = (
    "Helox cleans a folder of raw text before anything is trained on it.  \r\n"
    "Each step looks at one document and keeps it, changes it, or drops it.\r\n"
)


def prose(doc_text: str) -> Document:
    return Document(doc_text, "t.txt", "prose")


def test_whitespace_prose_and_code() -> None:
    step = WhitespaceNormalizer()
    messy = "\n\nTitle  \r\n\r\n\r\n\r\n\r\nBody\t \rnext\n\n\n"
    assert step(prose(messy)).text == "Title\n\n\nBody\nnext"
    code = "def f():\r\n    if x:  \r\n        return 1\t\n\n\n\n\n\n    return 2\n"
    cleaned = step(Document(code, "f.py", "code")).text
    assert cleaned == "def f():\n    if x:\n        return 1\n\n\n\n\n\n    return 2\n"
    tidy = prose("already tidy")
    assert step(tidy) is tidy


def test_unicode_and_length_and_url_steps() -> None:
    assert UnicodeNormalizer("NFC")(prose("cafe\u0301")).text == "caf\u00e9"
    assert UnicodeNormalizer("NFKC")(prose("\ufb01ne")).text == "fine"
    assert MinLengthFilter(5)(prose("1234")) is None
    assert MinLengthFilter(5)(prose("12345")) is not None
    assert MaxLengthFilter(5)(prose("123456")) is None
    assert MaxLengthFilter(5)(prose("12345")).text == "12345"
    links = " ".join(f"https://example.org/{i}" for i in range(3)) + " www.example.com"
    assert UrlFilter(4)(prose(links)) is not None
    assert UrlFilter(3)(prose(links)) is None


def test_build_steps_follows_the_config() -> None:
    names = [step.name for step in build_steps(CleanConfig())]
    assert names == [
        "unicode_normalization",
        "whitespace_normalization",
        "empty",
        "min_text_length",
        "max_text_length",
        "max_urls",
    ]
    assert "unicode_normalization" not in [
        step.name for step in build_steps(CleanConfig(unicode_form="none"))
    ]


def test_a_new_step_brings_its_own_reason() -> None:
    class NoShouting(Step):
        name = "no_shouting"

        def __call__(self, doc: Document) -> Document | None:
            return None if doc.text.isupper() else doc

    stats = Stats()
    steps = [*build_steps(CleanConfig(min_text_length=1)), NoShouting()]
    kept, reason = apply_steps(prose("calm words"), steps, stats)
    assert reason is None and kept.text == "calm words"
    dropped, reason = apply_steps(prose("LOUD  \r\n"), steps, stats)
    assert (reason, dropped.text) == ("no_shouting", "LOUD")
    report = stats.to_dict()
    assert report["removed"]["no_shouting"] == {"documents": 1, "bytes": 4}
    assert report["modified"]["whitespace_normalization"] == {"documents": 1, "bytes": -4}
    assert (report["documents_in"], report["documents_out"]) == (2, 1)


@pytest.fixture
def raw_dir(tmp_path: Path) -> Path:
    root = tmp_path / "raw"
    (root / "nested" / "deeper").mkdir(parents=True)
    for index in range(12):
        folder = (
            root
            if index % 3 == 0
            else root / "nested"
            if index % 3 == 1
            else root / "nested" / "deeper"
        )
        (folder / f"doc{index}.md").write_text(f"Document {index}.\r\n" + PARAGRAPH * 3)
        (folder / f"code{index}.py").write_text(f"def f{index}(x):  \n    return x * {index}\n" * 8)
    (root / "short.txt").write_text("too short")
    (root / "empty.txt").write_text(" \n\n ")
    (root / "spam.txt").write_text(
        PARAGRAPH + " ".join(f"http://spam.example/{i}" for i in range(30))
    )
    (root / "huge.txt").write_text(PARAGRAPH * 200)
    (root / "latin1.txt").write_bytes("na\u00efve ".encode("latin-1") * 60)
    (root / "binary.rst").write_bytes(b"\x00" * 300)
    (root / "photo.jpg").write_bytes(b"\xff\xd8\xff")
    lines = [json.dumps({"text": f"Record {i}. " + PARAGRAPH * 2}) for i in range(20)]
    lines[5] = "{broken"
    lines[9] = json.dumps({"content": "wrong field"})
    (root / "nested" / "records.jsonl").write_text("\n".join(lines) + "\n")
    packed = zstandard.ZstdCompressor().compress(
        "".join(
            json.dumps({"text": f"Packed {i}. " + PARAGRAPH * 2}) + "\n" for i in range(10)
        ).encode()
    )
    (root / "nested" / "packed.jsonl.zst").write_bytes(packed)
    (root / "nested" / "cut.jsonl.zst").write_bytes(packed[:-10])
    return root


CONFIG = CleanConfig(min_text_length=100, max_text_length=5000, max_urls=20, parts=3)
TOTAL_FILES = 24 + 7 + 3


def clean_all(raw_dir: Path, out: Path, parts: int) -> list[Stats]:
    return [
        clean_part(
            raw_dir,
            part,
            parts,
            CONFIG,
            out / f"part-{part}.jsonl.zst",
            out / "rejected" / f"part-{part}.jsonl.zst",
            out / f"part-{part}.jsonl.zst.stats.json",
        )
        for part in range(parts)
    ]


def test_parts_cover_every_file_once_and_counts_add_up(raw_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "clean"
    part_stats = clean_all(raw_dir, out, 3)
    total = sum(part_stats, Stats())

    assert total.files.seen == TOTAL_FILES
    assert total.files.seen == total.files.read + total.files.skipped
    assert total.skipped_by_reason == {
        "binary (NUL bytes)": 1,
        "malformed JSON": 1,
        "missing text field": 1,
        "not UTF-8": 1,
        "truncated or corrupt zstd stream": 1,
        "unsupported extension": 1,
    }
    report = total.to_dict()
    removed = {name: counts["documents"] for name, counts in report["removed"].items()}
    assert removed == {
        "unicode_normalization": 0,
        "whitespace_normalization": 0,
        "empty": 1,
        "min_text_length": 1,
        "max_text_length": 1,
        "max_urls": 1,
    }
    assert report["documents_in"] == 24 + 4 + 18 + 10
    assert report["documents_in"] == report["documents_out"] + sum(removed.values())
    removed_bytes = sum(counts["bytes"] for counts in report["removed"].values())
    modified_bytes = sum(counts["bytes"] for counts in report["modified"].values())
    assert report["bytes_in"] + modified_bytes == report["bytes_out"] + removed_bytes
    assert report["kinds"]["code"]["documents_out"] == 12

    kept, rejected = [], []
    for part, stats in enumerate(part_stats):
        kept_here = list(iter_jsonl(out / f"part-{part}.jsonl.zst"))
        rejected_here = list(iter_jsonl(out / "rejected" / f"part-{part}.jsonl.zst"))
        assert len(kept_here) == stats.flow.documents_out
        assert len(rejected_here) == stats.flow.documents_in - stats.flow.documents_out
        saved = read_json(out / f"part-{part}.jsonl.zst.stats.json")
        assert (saved["part"], saved["parts"]) == (part, 3)
        assert saved == {"part": part, "parts": 3, **stats.to_dict()}
        for record in kept_here:
            assert part_of(record["source"].split(":")[0], 3) == part
        kept += kept_here
        rejected += rejected_here
    assert all(set(record) == {"text", "source", "kind"} for record in kept)
    assert all("\r" not in record["text"] for record in kept)
    assert sorted(record["reason"] for record in rejected) == [
        "empty",
        "max_text_length",
        "max_urls",
        "min_text_length",
    ]
    assert len({record["source"] for record in kept}) == len(kept)


def test_clean_is_deterministic_and_one_part_takes_everything(
    raw_dir: Path, tmp_path: Path
) -> None:
    first = clean_all(raw_dir, tmp_path / "a", 1)[0]
    again = clean_all(raw_dir, tmp_path / "b", 1)[0]
    assert first.to_dict() == again.to_dict()
    assert first.files.seen == TOTAL_FILES
    assert (tmp_path / "a" / "part-0.jsonl.zst").read_bytes() == (
        tmp_path / "b" / "part-0.jsonl.zst"
    ).read_bytes()


def test_part_of_is_a_stable_hash() -> None:
    digest = hashlib.blake2b(b"nested/doc1.md", digest_size=8).digest()
    assert part_of("nested/doc1.md", 7) == int.from_bytes(digest, "big") % 7
    with pytest.raises(ValueError, match="out of range"):
        clean_part(".", 3, 3, CONFIG, "x", "y", "z")


def test_stats_add_up_and_round_trip() -> None:
    one, two = Stats(), Stats()
    steps = build_steps(CleanConfig(min_text_length=3))
    apply_steps(prose("keep me"), steps, one)
    apply_steps(prose("no"), steps, two)
    two.skip_file("x.bin", "unsupported extension")
    two.file_read()
    total = one + two
    assert (total.flow.documents_in, total.flow.documents_out) == (2, 1)
    assert total.removed["min_text_length"].documents == 1
    assert total.files.seen == 2
    assert Stats.from_dict(json.loads(json.dumps(total.to_dict()))).to_dict() == total.to_dict()


def test_text_cleaner() -> None:
    cleaner = TextCleaner(min_length=20, max_urls=1)
    assert cleaner.clean("short") is None
    assert (
        cleaner.clean("A sentence long enough to keep.  \r\n") == "A sentence long enough to keep."
    )
    assert cleaner.clean("see https://a.example and https://b.example for more text") is None
    assert cleaner.stats.removed["max_urls"].documents == 1
    assert cleaner.stats.removed["min_text_length"].documents == 1


def test_data_collector(raw_dir: Path, tmp_path: Path) -> None:
    collector = DataCollector(tmp_path / "out", TextCleaner(min_length=100, max_length=5000))
    path = collector.collect_from_directory(raw_dir)
    assert path == tmp_path / "out" / "collected.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == collector.stats.flow.documents_out == 56 - 4
    assert {record["kind"] for record in records} == {"prose", "code"}
    assert read_json(str(path) + ".stats.json")["documents_out"] == len(records)

    top_only = DataCollector(tmp_path / "top", TextCleaner(min_length=100, max_length=5000))
    top_records = top_only.collect_from_directory(raw_dir, recursive=False).read_text().splitlines()
    sources = {json.loads(line)["source"] for line in top_records}
    assert sources and all("/" not in source for source in sources)
    assert len(sources) == 8
