"""A newcomer's own corpus: packed files, UTF-16 and old Mac line ends, files of no listed
extension, HTML pages, JSON arrays, JSONL with another or a nested text key, odd file
names, huge files, overlapping or tiny sources, too small a corpus or vocabulary. Each is
read as it should be, or stopped or skipped with a message naming the file and config key."""

from __future__ import annotations

import bz2
import gzip
import html
import json
import logging
import lzma
import os
import pydoc
import re
import subprocess
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from conftest import STDLIB, stdlib_sources
from test_workflow import planned_jobs, snakemake_command

from helox.common.io import JsonlWriter, iter_jsonl
from helox.common.schema import schema_errors
from helox.data import skips as reasons
from helox.data.clean import clean_part
from helox.data.clean_config import CleanConfig
from helox.data.corpus import SourceConfig, as_sources, part_of, raw_listings
from helox.data.documents import Document, Stats
from helox.data.kinds import detect_kind
from helox.data.readers import read_documents
from helox.pipeline.checks import corpus_errors, own_output_errors
from helox.tokens.shards import EmptySplitError, ShardsConfig, assign_split, build_dataset_shards
from helox.tokens.tokenizer import TokenizerConfig, build_tokenizer, train_tokenizer


def stdlib_prose() -> str:
    """A hard-wrapped prose file that ships with the interpreter (its licence, or another
    text file of the standard library)."""
    for path in [STDLIB / "LICENSE.txt", *sorted(STDLIB.glob("**/*.txt"))]:
        if path.is_file() and path.stat().st_size > 5000:
            return path.read_text(encoding="utf-8")
    pytest.skip("no text file of over 5 kB in the standard library", allow_module_level=True)


PROSE = stdlib_prose()
MODULE_NAME, MODULE = stdlib_sources(1, max_bytes=30_000)[0]


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def jsonl(records: list[dict]) -> bytes:
    return b"".join(json.dumps(record).encode() + b"\n" for record in records)


def read_all(root: Path, config: CleanConfig | None = None) -> tuple[list[Document], Stats]:
    stats = Stats()
    return list(read_documents(root, config or CleanConfig(), stats)), stats


def skips(stats: Stats) -> dict[tuple[str, int | None], str]:
    return {(entry["path"], entry["line"]): entry["reason"] for entry in stats.skipped_entries}


def test_packed_text_code_and_jsonl_files_are_unpacked(tmp_path: Path) -> None:
    records = [{"text": PROSE[i : i + 3000]} for i in range(0, 9000, 3000)]
    write(tmp_path / "licence.txt.gz", gzip.compress(PROSE.encode()))
    write(tmp_path / "licence.rst.bz2", bz2.compress(PROSE.encode()))
    write(tmp_path / "licence.md.xz", lzma.compress(PROSE.encode()))
    packed_module = zstandard.ZstdCompressor().compress(MODULE.encode())
    write(tmp_path / f"{MODULE_NAME}.zst", packed_module)
    write(tmp_path / "records.jsonl.bz2", bz2.compress(jsonl(records)))
    write(tmp_path / "records.jsonl.xz", lzma.compress(jsonl(records)))
    whole = gzip.compress(PROSE.encode())
    write(tmp_path / "cut.txt.gz", whole[: len(whole) // 2])
    write(tmp_path / "junk.txt.bz2", b"not bzip2 at all")
    write(tmp_path / "cut.jsonl.xz", lzma.compress(jsonl(records))[:-40])

    docs, stats = read_all(tmp_path)
    by_source = {doc.source: doc for doc in docs}
    for name in ("licence.txt.gz", "licence.rst.bz2", "licence.md.xz"):
        assert by_source[name].text == PROSE
        assert by_source[name].kind == detect_kind(PROSE) != "code"
    assert by_source[f"{MODULE_NAME}.zst"].text == MODULE
    assert by_source[f"{MODULE_NAME}.zst"].kind == "code"
    for name in ("records.jsonl.bz2", "records.jsonl.xz"):
        assert [by_source[f"{name}:{line}"].text for line in (1, 2, 3)] == [
            record["text"] for record in records
        ]
    cut_lines = [doc for doc in docs if doc.origin == "cut.jsonl.xz"]
    assert skips(stats) == {
        ("cut.txt.gz", None): reasons.BAD_GZIP,
        ("junk.txt.bz2", None): reasons.BAD_BZIP2,
        ("cut.jsonl.xz", len(cut_lines) + 1): reasons.BAD_XZ,
    }
    assert (stats.files.read, stats.files.skipped) == (7, 2)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32", "utf-32-be"])
def test_text_with_a_utf16_or_utf32_mark_is_decoded(tmp_path: Path, encoding: str) -> None:
    mark = "\ufeff" if encoding.endswith("-be") else ""  # Python writes the mark for LE only
    write(tmp_path / "licence.txt", (mark + PROSE).encode(encoding))
    write(tmp_path / "module.py", (mark + MODULE).encode(encoding))
    docs, stats = read_all(tmp_path)
    assert {doc.source: doc.text for doc in docs} == {"licence.txt": PROSE, "module.py": MODULE}
    assert stats.skipped_total == 0


def test_utf16_jsonl_is_skipped_whole_with_a_way_to_convert_it(tmp_path: Path, caplog) -> None:
    records = [{"text": PROSE[:2000]}, {"text": PROSE[2000:4000]}]
    write(tmp_path / "wide.jsonl", jsonl(records).decode().encode("utf-16"))
    with caplog.at_level(logging.WARNING, logger="helox.data.readers"):
        docs, stats = read_all(tmp_path)
    assert docs == []
    assert skips(stats) == {("wide.jsonl", 1): reasons.NOT_UTF8}
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 1
    assert "wide.jsonl:1" in messages[0] and "iconv -f UTF-16 -t UTF-8" in messages[0]


def test_classic_mac_line_ends_are_read_like_unix_ones(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    write(raw / "unix.txt", PROSE)
    write(raw / "mac.txt", PROSE.replace("\n", "\r"))
    write(raw / "windows.txt", PROSE.replace("\n", "\r\n"))
    write(raw / "unix.py", MODULE)
    write(raw / "mac.py", MODULE.replace("\n", "\r"))
    kept = tmp_path / "kept.jsonl.zst"
    stats = clean_part(
        raw, 0, 1, CleanConfig(), kept, tmp_path / "rejected.jsonl.zst", tmp_path / "stats.json"
    )
    records = {record["source"]: record for record in iter_jsonl(kept)}
    assert stats.flow.documents_out == 5
    for name in ("mac.txt", "windows.txt"):
        assert records[name]["kind"] == records["unix.txt"]["kind"] == detect_kind(PROSE)
        assert records[name]["text"] == records["unix.txt"]["text"]
    assert records["mac.py"]["text"] == records["unix.py"]["text"]


def test_files_of_no_listed_extension_are_summed_up_with_the_keys_to_read_them(
    tmp_path: Path, caplog
) -> None:
    write(tmp_path / "COPYING", PROSE)
    write(tmp_path / "changelog.gz", gzip.compress(PROSE.encode()))
    write(tmp_path / "page.html", f"<html><body><pre>{PROSE}</pre></body></html>")
    write(tmp_path / "other.html", f"<p>{PROSE[:3000]}</p>")
    write(tmp_path / "kept.txt", PROSE)
    with caplog.at_level(logging.WARNING, logger="helox.data.readers"):
        docs, stats = read_all(tmp_path)
    assert [doc.source for doc in docs] == ["kept.txt"]
    assert stats.skipped_by_reason == {reasons.UNSUPPORTED: 4}
    (message,) = [record.getMessage() for record in caplog.records]
    assert "4 files not read" in message
    assert ".html 2, (none) 1, (none).gz 1" in message
    assert "clean.text_extensions" in message and "clean.code_extensions" in message

    with_bare_names = CleanConfig(text_extensions=[".txt", ""])
    docs, stats = read_all(tmp_path, with_bare_names)
    assert {doc.source: doc.text for doc in docs} == {
        "COPYING": PROSE,
        "changelog.gz": PROSE,
        "kept.txt": PROSE,
    }
    assert stats.skipped_by_reason == {reasons.UNSUPPORTED: 2}


def test_extensions_in_the_config_take_one_dot_or_none() -> None:
    assert schema_errors({"clean": {"text_extensions": [".txt", ""]}}) == []
    (error,) = schema_errors({"clean": {"code_extensions": [".py", ".py.gz"]}})
    assert error.startswith("config key clean.code_extensions.1: '.py.gz'")
    assert "one dot" in error


def test_sources_as_downloaded_each_read_by_its_own_text_field(tmp_path: Path, caplog) -> None:
    """The Stack's parquet (`content`), FineWeb's (`text`) and RedPajama's JSONL (`raw_content`)
    in one run; a file without its source's field is counted, naming what it does hold."""
    modules = stdlib_sources(40, max_bytes=30_000)
    paragraphs = [p for p in PROSE.split("\n\n") if len(p) > 300]
    stack = {
        "content": [text for _, text in modules],
        "max_stars_repo_path": [name for name, _ in modules],
        "lang": ["Python"] * len(modules),
    }
    (tmp_path / "the-stack" / "data" / "python").mkdir(parents=True)
    (tmp_path / "fineweb").mkdir()
    pq.write_table(pa.table(stack), tmp_path / "the-stack/data/python/train-00000.parquet")
    fineweb = {"text": paragraphs, "id": [f"<urn:{i}>" for i in range(len(paragraphs))]}
    fineweb["url"] = [f"https://example.org/{i}" for i in range(len(paragraphs))]
    pq.write_table(pa.table(fineweb), tmp_path / "fineweb" / "000_00000.parquet")
    # A FineWeb file in The Stack's folder holds no `content`: counted, never read.
    pq.write_table(pa.table(fineweb), tmp_path / "the-stack" / "stray.parquet")
    pajama = [{"raw_content": p, "meta": {"url": "u"}} for p in paragraphs]
    pajama.append({"text": paragraphs[0], "meta": {}})
    write(tmp_path / "redpajama" / "en_head_0000.jsonl", jsonl(pajama))
    sources = [
        SourceConfig("stack", str(tmp_path / "the-stack"), kind="code", text_field="content"),
        SourceConfig("fineweb", str(tmp_path / "fineweb")),
        SourceConfig("redpajama", str(tmp_path / "redpajama"), text_field="raw_content"),
    ]
    assert schema_errors({"corpus": {"sources": [vars(source) for source in sources]}}) == []
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="helox.data.readers"):
        stats = clean_part(sources, 0, 1, CleanConfig(), out / "kept", out / "rej", out / "s")
    rows = stats.to_dict()["sources"]
    assert rows["stack/data/python/train-00000.parquet"]["documents_in"] == len(modules)
    assert rows["fineweb/000_00000.parquet"]["documents_in"] == len(paragraphs)
    assert rows["redpajama/en_head_0000.jsonl"]["documents_in"] == len(paragraphs)
    assert stats.skipped_by_reason == {reasons.MISSING_TEXT: 2}
    messages = "\n".join(record.getMessage() for record in caplog.records)
    assert "stack/stray.parquet: skipped: missing text field (no 'content' column; " in messages
    assert "it has 'text', 'id', 'url': the source's text_field (corpus.sources)" in messages
    line = len(pajama)
    assert f"en_head_0000.jsonl:{line}: skipped: missing text field (no " in messages
    assert "'raw_content' key; it has 'text', 'meta'" in messages
    kept = {record["corpus"] for record in iter_jsonl(out / "kept")}
    assert kept == {"stack", "fineweb", "redpajama"}


def test_many_bad_lines_log_a_few_and_sum_up_the_rest(tmp_path: Path, caplog) -> None:
    paragraphs = [p for p in PROSE.split("\n\n") if p.strip()]
    records = [{"id": i, "content": paragraphs[i % len(paragraphs)]} for i in range(500)]
    write(tmp_path / "export.jsonl", jsonl(records))
    with caplog.at_level(logging.WARNING, logger="helox.data.readers"):
        docs, stats = read_all(tmp_path)
    assert docs == []
    assert stats.skipped_by_reason == {reasons.MISSING_TEXT: 500}
    assert len(stats.skipped_entries) == 500
    messages = [record.getMessage() for record in caplog.records]
    shown = reasons.MAX_LOGGED_PER_FILE
    assert len(messages) == shown + 1
    assert messages[0] == (
        "export.jsonl:1: skipped: missing text field (no 'text' key; it has 'id', 'content': "
        "the source's text_field (corpus.sources) or clean.jsonl_text_field names the text key)"
    )
    assert messages[-1] == (
        f"export.jsonl: {500 - shown} more lines skipped (not logged one by one): "
        "missing text field " + str(500 - shown)
    )

    docs, stats = read_all(tmp_path, CleanConfig(jsonl_text_field="content"))
    assert [doc.text for doc in docs] == [record["content"] for record in records]


def test_a_dotted_text_field_reaches_into_nested_records(tmp_path: Path) -> None:
    records = [
        {"meta": {"id": 1}, "data": {"text": PROSE[:3000]}},
        {"meta": {"id": 2}, "data": {"text": None}},
        {"meta": {"id": 3}, "data": "flat"},
        {"data.text": PROSE[3000:6000]},
    ]
    write(tmp_path / "nested.jsonl", jsonl(records))
    docs, stats = read_all(tmp_path, CleanConfig(jsonl_text_field="data.text"))
    assert [(doc.source, doc.text) for doc in docs] == [
        ("nested.jsonl:1", PROSE[:3000]),
        ("nested.jsonl:4", PROSE[3000:6000]),
    ]
    assert skips(stats) == {
        ("nested.jsonl", 2): reasons.TEXT_NOT_STRING,
        ("nested.jsonl", 3): reasons.MISSING_TEXT,
    }


def test_a_json_array_of_records_gives_a_document_each(tmp_path: Path, caplog) -> None:
    modules = stdlib_sources(4, max_bytes=30_000)
    records = [{"text": text, "source": name, "kind": "code"} for name, text in modules]
    array = json.dumps([*records, "a stray string", {"body": "no text"}], indent=2)
    write(tmp_path / "modules.json", array)
    write(tmp_path / "packed.json.gz", gzip.compress(json.dumps(records[:2]).encode()))
    write(tmp_path / "package.json", json.dumps({"name": "demo", "version": "1.0.0"}))
    write(tmp_path / "numbers.json", "[1, 2, 3]")
    write(tmp_path / "cut.json", array[: len(array) // 2])
    with caplog.at_level(logging.WARNING, logger="helox.data.readers"):
        docs, stats = read_all(tmp_path)
    assert [(doc.source, doc.kind) for doc in docs] == [
        *((name, "code") for name, _ in modules),
        *((name, "code") for name, _ in modules[:2]),
    ]
    assert [doc.text for doc in docs[:4]] == [text for _, text in modules]
    assert {doc.origin for doc in docs} == {"modules.json", "packed.json.gz"}
    assert skips(stats) == {
        ("modules.json", 4): reasons.NOT_AN_OBJECT,
        ("modules.json", 5): reasons.MISSING_TEXT,
        ("package.json", None): reasons.NOT_AN_ARRAY,
        ("numbers.json", None): reasons.NOT_AN_ARRAY,
        ("cut.json", None): reasons.MALFORMED_JSON,
    }
    assert (stats.files.read, stats.files.skipped) == (2, 3)
    messages = "\n".join(record.getMessage() for record in caplog.records)
    assert "cut.json: skipped: malformed JSON (Unterminated string starting at: line" in messages
    assert "2 .json files not read: they hold no array of records" in messages
    assert "package.json: skipped" not in messages


def test_sources_that_share_a_folder_or_a_weight_of_inf_are_refused(tmp_path: Path) -> None:
    books = tmp_path / "books"
    (books / "old").mkdir(parents=True)
    (tmp_path / "books-extra").mkdir()

    def errors(*sources: dict) -> list[str]:
        return corpus_errors({"corpus": {"sources": list(sources)}})

    assert errors({"name": "a", "path": str(books)}, {"name": "b", "path": f"{books}-extra"}) == []
    (same,) = errors({"name": "a", "path": str(books)}, {"name": "b", "path": f"{books}/"})
    assert same.startswith(f"config key corpus.sources.1.path: {books} is the folder of source 'a'")
    (inside,) = errors({"name": "a", "path": str(books / "old")}, {"name": "b", "path": str(books)})
    assert inside.startswith(f"config key corpus.sources.0.path: {books / 'old'} lies inside")
    assert "read twice" in inside
    (infinite,) = errors(
        {"name": "a", "path": str(books), "weight": float("inf")},
        {"name": "b", "path": f"{books}-extra"},
    )
    assert infinite == "config key corpus.sources.0.weight: inf must be a finite number"


def test_a_raw_folder_holding_the_pipelines_results_is_refused(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "results").mkdir(parents=True)
    (project / "notes").mkdir()
    results = str(project / "results")
    (whole,) = own_output_errors({"corpus": {"raw_dir": str(project)}}, results)
    assert whole.startswith(f"config key corpus.raw_dir: {project} holds the pipeline's own")
    assert "read back as corpus" in whole
    sources = [{"name": "a", "path": str(project / "notes")}, {"name": "b", "path": str(project)}]
    (second,) = own_output_errors({"corpus": {"sources": sources}}, results)
    assert second.startswith("config key corpus.sources.1.path:")
    assert own_output_errors({"corpus": {"raw_dir": str(project / "notes")}}, results) == []


def test_a_corpus_too_small_for_a_val_split_stops_at_the_manifest(tmp_path: Path) -> None:
    part = tmp_path / "dedup" / "part-0.jsonl.zst"
    with JsonlWriter(part) as writer:
        writer.write({"text": PROSE, "source": "licence.txt", "kind": "prose"})
    build_tokenizer([part], tmp_path / "tok", TokenizerConfig(vocab_size=1000, eval_docs=1))
    config = ShardsConfig(parts=1, train_split=0.8, val_split=0.1, test_split=0.1)
    model = tmp_path / "tok" / "spm.model"
    seed = next(seed for seed in range(100) if assign_split(PROSE, seed, config) == "train")
    with pytest.raises(EmptySplitError, match=r"the val split holds no documents: of the 1 left"):
        build_dataset_shards([part], model, tmp_path / "shards", config, seed=seed)
    assert not (tmp_path / "shards" / "manifest.json").exists()


def test_a_vocabulary_too_small_for_the_corpus_names_the_key(tmp_path: Path) -> None:
    part = tmp_path / "part-0.jsonl.zst"
    with JsonlWriter(part) as writer:
        writer.write({"text": PROSE, "source": "licence.txt", "kind": "prose"})
        writer.write({"text": MODULE, "source": MODULE_NAME, "kind": "code"})
    with pytest.raises(ValueError) as raised:
        train_tokenizer([part], tmp_path / "spm.model", TokenizerConfig(vocab_size=300))
    message = str(raised.value)
    assert message.startswith("config key tokenizer.vocab_size: 300 is too small for this corpus")
    needed = int(re.search(r"take (\d+) pieces", message).group(1))
    assert needed > 300
    assert not (tmp_path / "spm.model").exists()
    train_tokenizer([part], tmp_path / "spm.model", TokenizerConfig(vocab_size=needed + 50))
    assert (tmp_path / "spm.model").stat().st_size > 0


def test_a_text_file_too_large_for_any_document_is_skipped_unread(tmp_path: Path) -> None:
    config = CleanConfig(max_text_length=len(PROSE) // 8)
    limit = 4 * config.max_text_length + 4
    write(tmp_path / "whole.txt", PROSE)
    write(tmp_path / "packed.txt.xz", lzma.compress(PROSE.encode()))
    write(tmp_path / "short.txt", PROSE[: config.max_text_length])
    docs, stats = read_all(tmp_path, config)
    assert [doc.source for doc in docs] == ["short.txt"]
    assert skips(stats) == {
        ("packed.txt.xz", None): reasons.TOO_LARGE,
        ("whole.txt", None): reasons.TOO_LARGE,
    }
    assert len(PROSE.encode()) > limit


def test_a_file_name_that_is_not_utf8_is_read_under_a_printable_name(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    write(raw / os.fsdecode(b"caf\xe9 notes.txt"), PROSE)
    write(raw / "name with spaces.md", PROSE)
    kept = tmp_path / "kept.jsonl.zst"
    stats_path = tmp_path / "stats.json"
    clean_part(raw, 0, 1, CleanConfig(), kept, tmp_path / "rejected.jsonl.zst", stats_path)
    sources = sorted(record["source"] for record in iter_jsonl(kept))
    assert sources == ["caf\\xe9 notes.txt", "name with spaces.md"]
    assert set(json.loads(stats_path.read_text())["sources"]) == set(sources)


def test_html_named_as_text_is_read_as_its_visible_text(tmp_path: Path) -> None:
    page = pydoc.html.page("textwrap", pydoc.html.document(textwrap, "textwrap"))
    write(tmp_path / "textwrap.html", page)
    paragraphs = [" ".join(p.split()) for p in PROSE.split("\n\n") if p.strip()][:6]
    body = "".join(f"<p>{html.escape(p)}</p>\n" for p in paragraphs)
    framed = (
        "<html><head><title>Licence</title><style>p {margin: 0}</style></head><body>"
        "<nav><a href='/'>Home</a> | <a href='/about'>About</a></nav>"
        f"<script>var tracker = {{id: 1}};</script>{body}</body></html>"
    )
    write(tmp_path / "licence.htm.gz", gzip.compress(framed.encode()))
    config = CleanConfig(text_extensions=[".html", ".htm"])
    docs, stats = read_all(tmp_path, config)
    by_source = {doc.source: doc for doc in docs}
    assert by_source["licence.htm.gz"].text == "\n\n".join(paragraphs)
    reference = by_source["textwrap.html"].text
    assert "<td" in page and re.search(r"</?(td|tr|table|a|strong|span)\b", reference) is None
    assert "Text wrapping and filling." in reference
    assert "class TextWrapper(builtins.object)" in reference
    assert "Python: textwrap" not in reference

    as_code = CleanConfig(text_extensions=[".htm"], code_extensions=[".html"])
    docs, _ = read_all(tmp_path, as_code)
    assert {doc.source: doc.text for doc in docs}["textwrap.html"] == page


def test_an_edited_file_deep_in_the_raw_folder_reruns_its_clean_part(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    modules = stdlib_sources(12, max_bytes=30_000)
    for index, (name, text) in enumerate(modules):
        write(raw / f"pkg{index % 3}" / "sub" / name, text)
    listings = raw_listings(as_sources(raw), 2)
    assert raw_listings(as_sources(raw), 2) == listings
    workdir = tmp_path / "work"
    workdir.mkdir()
    targets = [f"results/clean/part-{part}.stats.json" for part in (0, 1)]

    def run(*args: str) -> subprocess.CompletedProcess:
        overlay = {"corpus": {"raw_dir": str(raw)}, "clean": {"parts": 2}}
        command = snakemake_command(workdir, *args, *targets, overlay=overlay)
        return subprocess.run(command, capture_output=True, text=True, timeout=600)

    result = run()
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert planned_jobs(run("-n")) == {}
    name, text = modules[4]
    edited = raw / "pkg1" / "sub" / name
    edited.write_text(text + "\n# one more line\n", encoding="utf-8")
    changed = {
        part
        for part, digest in raw_listings(as_sources(raw), 2).items()
        if digest != listings[part]
    }
    assert changed == {part_of(f"pkg1/sub/{name}", 2)}
    assert planned_jobs(run("-n")) == {"clean": 1}


def test_a_json_array_saved_as_jsonl_is_told_to_be_named_json(tmp_path: Path, caplog) -> None:
    records = [{"text": text} for _, text in stdlib_sources(3, max_bytes=30_000)]
    write(tmp_path / "one_line.jsonl", json.dumps(records))
    write(tmp_path / "records.json", json.dumps(records))
    with caplog.at_level(logging.WARNING, logger="helox.data.readers"):
        docs, stats = read_all(tmp_path)
    assert [doc.source for doc in docs] == ["records.json:0", "records.json:1", "records.json:2"]
    assert skips(stats) == {("one_line.jsonl", 1): reasons.NOT_AN_OBJECT}
    (message,) = [record.getMessage() for record in caplog.records]
    assert message == (
        "one_line.jsonl:1: skipped: JSON line is not an object (list; a file holding one "
        "JSON array of records is read when named .json)"
    )
