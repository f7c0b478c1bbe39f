"""Dedup across parts: exact and near duplicates, one kept per cluster whatever the parts, stats
that add up, an empty corpus that says why, config errors that name the key."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pytest

from helox.common.config_files import ConfigError, section_from_dict
from helox.common.io import JsonlWriter, iter_jsonl, read_json
from helox.data.clean import clean_part
from helox.data.clean_config import CleanConfig
from helox.data.dedup import EXACT, NEAR, DedupConfig, EmptyCorpusError, filter_part
from helox.data.dedup_index import IndexSettings, sign_part
from helox.data.dedup_join import join_pairs
from helox.data.dedup_pairs import find_pairs
from helox.data.stdlib import stdlib_files, stdlib_root
from helox.pipeline.config import config_errors


def write_part(path: Path, texts: list[str]) -> Path:
    with JsonlWriter(path) as writer:
        for line, text in enumerate(texts, start=1):
            writer.write({"text": text, "source": f"{path.name}:{line}", "kind": "prose"})
    return path


def dedup(
    inputs: list[Path], folder: Path, config: DedupConfig, clean_stats: list[Path] | None = None
) -> tuple[list[list[dict]], dict]:
    """The four steps as the workflow runs them: sign each part, find the pairs in each bucket
    job, join them, filter each part."""
    indexes = [folder / "signatures" / f"part-{i}" for i in range(len(inputs))]
    for input_path, index in zip(inputs, indexes, strict=True):
        sign_part(input_path, index, IndexSettings.of(config))
    pairs = [folder / "pairs" / f"bucket-{job}.npz" for job in range(config.bucket_jobs)]
    for job, path in enumerate(pairs):
        find_pairs(indexes, job, config.bucket_jobs, path, config)
    removed = [folder / "removed" / f"part-{i}.npz" for i in range(len(inputs))]
    stats = join_pairs(indexes, pairs, removed, folder / "stats.json", clean_stats)
    outputs = [folder / f"part-{i}.jsonl.zst" for i in range(len(inputs))]
    for input_path, listed, output in zip(inputs, removed, outputs, strict=True):
        filter_part(input_path, listed, output)
    return [list(iter_jsonl(path)) for path in outputs], stats


def real_texts(count: int) -> list[tuple[str, str]]:
    found = []
    for source in stdlib_files(stdlib_root()):
        if 3_000 <= source.size <= 15_000 and source.relative.endswith(".py"):
            found.append((source.relative, source.path.read_text(encoding="utf-8")))
        if len(found) == count:
            return found
    raise AssertionError("too few standard-library modules")


def near_copy(text: str, every: int = 100) -> str:
    """The text with one word in `every` replaced, layout kept: Jaccard 0.85–0.9 on 5-grams."""
    count = itertools.count()
    return re.sub(r"\S+", lambda word: "edited" if next(count) % every == 7 else word[0], text)


@pytest.mark.parametrize("bucket_jobs", [1, 3])
def test_exact_duplicates_keep_the_longest_copy(tmp_path: Path, bucket_jobs: int) -> None:
    parts = [
        ["alpha text", "beta text", "Alpha   TEXT", "gamma"],
        ["beta\ntext", "delta", "alpha text"],
        ["gamma", "GAMMA "],
        [],
    ]
    inputs = [write_part(tmp_path / f"in-{i}.jsonl.zst", texts) for i, texts in enumerate(parts)]
    survivors, stats = dedup(inputs, tmp_path / "dedup", DedupConfig(bucket_jobs=bucket_jobs))
    common = ["Alpha   TEXT", "delta", "GAMMA "]
    texts = [[record["text"] for record in part] for part in survivors]
    assert "Alpha   TEXT" in texts[0] and texts[1][-1] == "delta" and texts[2] == ["GAMMA "]
    kept = sorted(text for part in texts for text in part)
    assert kept in (sorted([*common, "beta text"]), sorted([*common, "beta\ntext"]))
    assert survivors[1][-1] == {"text": "delta", "source": "in-1.jsonl.zst:2", "kind": "prose"}
    assert (stats["documents_in"], stats["documents_out"]) == (9, 4)
    assert stats["removed"][EXACT]["documents"] == 5 and stats["removed"][NEAR]["documents"] == 0
    removed_bytes = stats["removed"][EXACT]["bytes"]
    assert stats["bytes_in"] == stats["bytes_out"] + removed_bytes
    assert [row["documents_out"] for row in stats["parts"]] == [len(part) for part in texts]
    assert stats["clusters"] == {
        "count": 3,
        "documents": 8,
        "largest": 3,
        "sizes": {"2": 1, "3": 2},
    }
    assert read_json(tmp_path / "dedup" / "stats.json") == stats


def test_case_is_kept_apart_when_asked(tmp_path: Path) -> None:
    inputs = [write_part(tmp_path / "in.jsonl.zst", ["Same words", "same  words", "same words"])]
    survivors, stats = dedup(inputs, tmp_path / "dedup", DedupConfig(lowercase=False))
    assert [r["text"] for r in survivors[0]] == ["Same words", "same  words"]
    assert stats["removed"][EXACT]["documents"] == 1


@pytest.mark.parametrize("bucket_jobs", [1, 4])
def test_near_duplicates_are_removed_and_listed(tmp_path: Path, bucket_jobs: int) -> None:
    texts = [text for _, text in real_texts(6)]
    copy = near_copy(texts[2])
    inputs = [
        write_part(tmp_path / "in-0.jsonl.zst", texts[:4]),
        write_part(tmp_path / "in-1.jsonl.zst", [copy, *texts[4:]]),
    ]
    survivors, stats = dedup(inputs, tmp_path / "near", DedupConfig(bucket_jobs=bucket_jobs))
    kept = [record["text"] for part in survivors for record in part]
    assert len(kept) == 6 and (texts[2] in kept) != (copy in kept)
    assert stats["removed"][NEAR]["documents"] == 1
    assert stats["clusters"]["sizes"] == {"2": 1} and stats["lsh"]["merged_pairs"] >= 1
    listed = [np.load(tmp_path / "near" / "removed" / f"part-{i}.npz") for i in range(2)]
    assert [int(removed["documents"]) for removed in listed] == [4, 3]
    part = next(i for i, removed in enumerate(listed) if len(removed["index"]))
    removed = listed[part]
    assert removed["near"].tolist() == [True] and len(listed[1 - part]["index"]) == 0
    removed_at = (part, int(removed["index"][0]))
    kept_at = (int(removed["keep_part"][0]), int(removed["keep_index"][0]))
    assert {removed_at, kept_at} == {(0, 2), (1, 0)}

    exact_only = section_from_dict(DedupConfig, {"near": {"enabled": False}}, "dedup")
    survivors, stats = dedup(inputs, tmp_path / "exact", exact_only)
    assert sum(map(len, survivors)) == 7 and stats["removed"][NEAR]["documents"] == 0


def test_parts_bucket_jobs_and_block_sizes_keep_the_same_documents(
    tmp_path: Path, monkeypatch
) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    for number, (name, text) in enumerate(real_texts(16)):
        stem = name.replace("/", "_").removesuffix(".py")
        (raw / f"{stem}.py").write_text(text)
        if number % 3 == 0:
            (raw / f"{stem}_near.py").write_text(near_copy(text))
        if number % 5 == 0:
            (raw / f"{stem}_copy.py").write_text(text)
    kept_sets, removed_counts = [], []
    # (parts, bucket jobs, tiny blocks): tiny blocks read each lane a few keys at a time and
    # write, merge and compare pairs a few at a time.
    for parts, bucket_jobs, tiny in ((1, 1, False), (4, 1, False), (4, 5, False), (3, 2, True)):
        config = CleanConfig(parts=parts)
        folder = tmp_path / f"parts-{parts}-{bucket_jobs}-{tiny}"
        inputs = []
        for part in range(parts):
            inputs.append(folder / "clean" / f"part-{part}.jsonl.zst")
            clean_part(
                raw,
                part,
                parts,
                config,
                inputs[-1],
                folder / "clean" / "rejected" / f"part-{part}.jsonl.zst",
                folder / "clean" / f"part-{part}.stats.json",
            )
        if parts == 4:
            assert sum(1 for path in inputs if next(iter_jsonl(path), None)) >= 3
        with monkeypatch.context() as patch:
            if tiny:
                for name, size in (("BLOCK_ENTRIES", 8), ("PAIR_BATCH", 3), ("CHUNK_PAIRS", 5)):
                    patch.setattr(f"helox.data.dedup_pairs.{name}", size)
                patch.setattr("helox.data.dedup_join.UNION_BATCH", 4)
            survivors, stats = dedup(inputs, folder / "dedup", DedupConfig(bucket_jobs=bucket_jobs))
        kept_sets.append({(r["source"], r["text"]) for part in survivors for r in part})
        removed_counts.append([stats["removed"][reason]["documents"] for reason in (EXACT, NEAR)])
    assert all(kept == kept_sets[0] for kept in kept_sets)
    assert all(counts == removed_counts[0] for counts in removed_counts)
    assert sum(removed_counts[0]) == 4 + 6


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
    with pytest.raises(EmptyCorpusError) as caught:
        dedup(inputs, tmp_path / "dedup", DedupConfig(), clean_stats=clean_stats)
    message = str(caught.value)
    assert "the corpus produced no documents" in message
    assert "removed by min_text_length: 4 documents" in message
    assert "skipped (unsupported extension): 1" in message
    assert not (tmp_path / "dedup" / "removed").exists()
    assert not (tmp_path / "dedup" / "stats.json").exists()

    with pytest.raises(EmptyCorpusError, match="no documents"):
        dedup(inputs, tmp_path / "dedup", DedupConfig())


def test_a_part_changed_since_clustering_is_refused(tmp_path: Path) -> None:
    part = write_part(tmp_path / "in.jsonl.zst", ["one text", "another text"])
    dedup([part], tmp_path / "dedup", DedupConfig())
    write_part(part, ["one text", "another text", "a third text"])
    with pytest.raises(ValueError, match="holds 3 documents but .* computed from 2"):
        filter_part(part, tmp_path / "dedup" / "removed" / "part-0.npz", tmp_path / "out.jsonl.zst")
    assert not (tmp_path / "out.jsonl.zst").exists()


def test_an_index_signed_with_other_settings_is_refused(tmp_path: Path) -> None:
    part = write_part(tmp_path / "in.jsonl.zst", ["one text here", "another text here"])
    sign_part(part, tmp_path / "index", IndexSettings.of(DedupConfig(lowercase=False)))
    other = section_from_dict(DedupConfig, {"near": {"num_perm": 64, "bands": 16}}, "dedup")
    with pytest.raises(
        ValueError,
        match=r"signed with lowercase False, num_perm 128, bands 32, "
        r"but the dedup section asks for lowercase True, num_perm 64, bands 16",
    ):
        find_pairs([tmp_path / "index"], 0, 1, tmp_path / "pairs.npz", other)
    assert not (tmp_path / "pairs.npz").exists()


def test_lsh_config_errors_name_their_keys() -> None:
    with pytest.raises(ConfigError, match=r"dedup\.near\.bands × dedup\.near\.rows = 16 × 4"):
        section_from_dict(DedupConfig, {"near": {"bands": 16}}, "dedup")
    with pytest.raises(ConfigError, match=r"unknown key dedup\.near\.band;"):
        section_from_dict(DedupConfig, {"near": {"band": 16}}, "dedup")
    errors = config_errors({"dedup": {"near": {"rows": 3, "shingles": 5}}})
    assert any("config key dedup.near.shingles: unknown key" in error for error in errors)
    assert any("must equal dedup.near.num_perm = 128" in error for error in errors)
