"""Exact dedup across parts: first occurrence wins, counts add up, an empty corpus says why."""

from __future__ import annotations

from pathlib import Path

import pytest

from helox.config import CleanConfig, DedupConfig
from helox.data.clean import clean_part
from helox.data.dedup import EmptyCorpusError, dedup_parts
from helox.io import JsonlWriter, iter_jsonl, read_json


def write_part(path: Path, texts: list[str]) -> Path:
    with JsonlWriter(path) as writer:
        for line, text in enumerate(texts, start=1):
            writer.write({"text": text, "source": f"{path.name}:{line}", "kind": "prose"})
    return path


def run(tmp_path: Path, parts: list[list[str]], lowercase: bool = True) -> tuple[list, dict]:
    inputs = [write_part(tmp_path / f"in-{i}.jsonl.zst", texts) for i, texts in enumerate(parts)]
    outputs = [tmp_path / "dedup" / f"part-{i}.jsonl.zst" for i in range(len(parts))]
    stats = dedup_parts(inputs, outputs, tmp_path / "dedup" / "stats.json", DedupConfig(lowercase))
    return [list(iter_jsonl(path)) for path in outputs], stats


def test_first_occurrence_wins_across_parts(tmp_path: Path) -> None:
    parts = [
        ["alpha text", "beta text", "Alpha   TEXT", "gamma"],
        ["beta\ntext", "delta", "alpha text"],
        ["gamma", "GAMMA "],
        [],
    ]
    survivors, stats = run(tmp_path, parts)
    assert [[r["text"] for r in part] for part in survivors] == [
        ["alpha text", "beta text", "gamma"],
        ["delta"],
        [],
        [],
    ]
    assert survivors[1][0] == {"text": "delta", "source": "in-1.jsonl.zst:2", "kind": "prose"}
    assert (stats["documents_in"], stats["documents_out"]) == (9, 4)
    assert stats["removed"]["exact_duplicate"]["documents"] == 5
    assert stats["bytes_in"] == stats["bytes_out"] + stats["removed"]["exact_duplicate"]["bytes"]
    assert [part["duplicates"] for part in stats["parts"]] == [1, 2, 2, 0]
    assert [part["documents_out"] for part in stats["parts"]] == [3, 1, 0, 0]
    assert read_json(tmp_path / "dedup" / "stats.json") == stats


def test_case_is_kept_apart_when_asked(tmp_path: Path) -> None:
    survivors, stats = run(tmp_path, [["Same words", "same  words", "same words"]], lowercase=False)
    assert [r["text"] for r in survivors[0]] == ["Same words", "same  words"]
    assert stats["removed"]["exact_duplicate"]["documents"] == 1


def test_clean_then_dedup_end_to_end(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    paragraph = "The same paragraph, copied into several files of one corpus.\n" * 4
    for index in range(9):
        (raw / f"copy{index}.txt").write_text(paragraph)
        (raw / f"unique{index}.txt").write_text(f"Unique note number {index}.\n" + paragraph)
    config = CleanConfig(min_text_length=50, parts=3)
    clean_outputs = []
    for part in range(3):
        clean_outputs.append(tmp_path / "clean" / f"part-{part}.jsonl.zst")
        clean_part(
            raw,
            part,
            3,
            config,
            clean_outputs[-1],
            tmp_path / "clean" / "rejected" / f"part-{part}.jsonl.zst",
            tmp_path / "clean" / f"part-{part}.stats.json",
        )
    outputs = [tmp_path / "dedup" / f"part-{part}.jsonl.zst" for part in range(3)]
    stats = dedup_parts(clean_outputs, outputs, tmp_path / "dedup.stats.json", DedupConfig())
    kept = [record["source"] for path in outputs for record in iter_jsonl(path)]
    assert len(kept) == 10
    assert sum(source.startswith("copy") for source in kept) == 1
    assert stats["documents_in"] == 18


def test_empty_corpus_names_the_filters(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    for index in range(4):
        (raw / f"tiny{index}.md").write_text("too short")
    (raw / "blob.bin").write_bytes(b"\x00")
    config = CleanConfig(parts=2)
    inputs, clean_stats = [], []
    for part in range(2):
        inputs.append(tmp_path / f"clean-{part}.jsonl.zst")
        clean_stats.append(tmp_path / f"clean-{part}.stats.json")
        clean_part(raw, part, 2, config, inputs[-1], tmp_path / f"rej-{part}.zst", clean_stats[-1])
    outputs = [tmp_path / f"dedup-{part}.jsonl.zst" for part in range(2)]
    with pytest.raises(EmptyCorpusError) as caught:
        dedup_parts(
            inputs, outputs, tmp_path / "dedup.json", DedupConfig(), clean_stats=clean_stats
        )
    message = str(caught.value)
    assert "the corpus produced no documents" in message
    assert "removed by min_text_length: 4 documents" in message
    assert "skipped (unsupported extension): 1" in message
    assert not any(path.exists() for path in outputs)

    with pytest.raises(EmptyCorpusError, match="no documents"):
        dedup_parts(inputs, outputs, tmp_path / "dedup.json", DedupConfig())


def test_inputs_and_outputs_must_pair_up(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="one output per input"):
        dedup_parts([tmp_path / "a"], [], tmp_path / "s.json", DedupConfig())
