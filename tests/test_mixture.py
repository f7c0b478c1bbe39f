"""Sources mixed by weight: whole documents repeated or left out, train tokens per source as
the weights say, validation and test untouched; a weight edit reruns the shards onward only."""

from __future__ import annotations

import json
import pydoc_data.topics
import random
import subprocess
from pathlib import Path

import pytest
from conftest import STDLIB
from test_workflow import planned_jobs, snakemake_command

from helox.common.config_files import ConfigError
from helox.common.io import JsonlWriter, iter_jsonl
from helox.data.corpus import CorpusConfig
from helox.pipeline.config import config_errors
from helox.pipeline.report import write_mixture
from helox.tokens.mixture import MixtureError, Resampler, repeat_factors
from helox.tokens.shards import SPLITS, ShardsConfig, build_dataset_shards, read_shard
from helox.tokens.tokenizer import TokenizerConfig, build_tokenizer

WEIGHTS = {"code": 1.0, "docs": 3.0}


def test_factors_give_each_source_its_share_of_the_tokens() -> None:
    factors = repeat_factors({"a": 1.0, "b": 3.0}, {"a": 600, "b": 400})
    assert factors == pytest.approx({"a": 250 / 600, "b": 750 / 400})
    with pytest.raises(MixtureError, match="'b' has weight 1.0 but no training tokens"):
        repeat_factors({"a": 1.0, "b": 1.0}, {"a": 10})


@pytest.mark.parametrize("factor", [0.3, 1.0, 1.7, 3.0])
def test_resampler_repeats_whole_documents_to_the_token(factor: float) -> None:
    rng = random.Random(factor)
    sizes = [rng.randint(5, 400) for _ in range(2000)]
    texts = [f"document {i}" for i in range(len(sizes))]
    resampler = Resampler({"a": factor}, seed=1)
    copies = [resampler.copies("a", text, size) for text, size in zip(texts, sizes, strict=True)]
    written = sum(c * size for c, size in zip(copies, sizes, strict=True))
    assert abs(written - factor * sum(sizes)) <= max(sizes)
    assert min(copies) >= 0 and all(c == 1 for c in copies) == (factor == 1.0)
    again = Resampler({"a": factor}, seed=1)
    assert copies == [again.copies("a", t, s) for t, s in zip(texts, sizes, strict=True)]


def small_modules(max_bytes: int = 3000) -> list[tuple[str, str]]:
    """Standard-library modules of 600 to `max_bytes` bytes, as (flat name, text)."""
    skipped = {"test", "tests", "idlelib", "site-packages", "lib2to3"}
    found = []
    for path in sorted(STDLIB.rglob("*.py")):
        parts = path.relative_to(STDLIB).parts
        if not skipped & set(parts) and 600 < path.stat().st_size <= max_bytes:
            found.append(("_".join(parts), path.read_text(encoding="utf-8")))
    return found


def doc_sections(max_chars: int = 2000) -> list[tuple[str, str]]:
    """Python's own documentation (pydoc's topics), in runs of whole paragraphs of at most
    about `max_chars`: documents small enough that one of them is a small share of a source."""
    found = []
    for topic, text in sorted(pydoc_data.topics.topics.items()):
        section: list[str] = []
        for paragraph in text.split("\n\n"):
            section.append(paragraph)
            if sum(map(len, section)) >= max_chars:
                found.append((f"{topic}-{len(found)}", "\n\n".join(section)))
                section = []
        if section:
            found.append((f"{topic}-{len(found)}", "\n\n".join(section)))
    return found


def write_source_parts(folder: Path) -> list[Path]:
    """Two dedup-like parts: standard-library code and Python's own documentation."""
    code = small_modules()
    docs = doc_sections()
    records = [{"text": t, "source": n, "kind": "code", "corpus": "code"} for n, t in code]
    records += [{"text": t, "source": n, "kind": "docs", "corpus": "docs"} for n, t in docs]
    paths = [folder / f"part-{i}.jsonl.zst" for i in range(2)]
    writers = [JsonlWriter(path) for path in paths]
    for index, record in enumerate(records):
        writers[index % 2].write(record)
    for writer in writers:
        writer.close()
    return paths


def test_two_sources_get_their_weights_in_train_and_natural_val_test(tmp_path: Path) -> None:
    parts = write_source_parts(tmp_path)
    build_tokenizer(parts, tmp_path / "tok", TokenizerConfig(vocab_size=1000, eval_docs=5))
    model = tmp_path / "tok" / "spm.model"
    config = ShardsConfig(parts=2, train_split=0.8, val_split=0.1, test_split=0.1)
    natural = build_dataset_shards(parts, model, tmp_path / "natural", config, seed=5)
    mixed = build_dataset_shards(parts, model, tmp_path / "mixed", config, 5, weights=WEIGHTS)

    sources = mixed["sources"]
    train = sum(sources[name]["tokens"]["train"] for name in WEIGHTS)
    assert train == mixed["splits"]["train"]["tokens"]
    for name, weight in WEIGHTS.items():
        share = sources[name]["tokens"]["train"] / train
        assert share == pytest.approx(weight / sum(WEIGHTS.values()), rel=0.05)
        assert sources[name]["share"] == pytest.approx(share)
        base = natural["sources"][name]
        assert sources[name]["natural_train_tokens"] == base["tokens"]["train"]
        assert sources[name]["epochs"] == pytest.approx(
            sources[name]["tokens"]["train"] / base["tokens"]["train"]
        )
        for split in ("val", "test"):
            assert sources[name]["tokens"][split] == base["tokens"][split]
    assert sources["docs"]["epochs"] > 1 > sources["code"]["epochs"]
    for split in ("val", "test"):
        assert mixed["splits"][split] == {**natural["splits"][split]}
    # Upsampling repeats whole documents: every train row is a natural train row.
    natural_rows = {
        tuple(row)
        for f in natural["splits"]["train"]["files"]
        for row in read_shard(tmp_path / "natural" / f).column("tokens").to_pylist()
    }
    mixed_rows = [
        tuple(row)
        for f in mixed["splits"]["train"]["files"]
        for row in read_shard(tmp_path / "mixed" / f).column("tokens").to_pylist()
    ]
    assert set(mixed_rows) <= natural_rows and len(mixed_rows) > len(set(mixed_rows))
    again = build_dataset_shards(parts, model, tmp_path / "again", config, 5, weights=WEIGHTS)
    assert again["shards_sha256"] == mixed["shards_sha256"]


def test_the_workflow_mixes_two_sources_and_a_weight_edit_reruns_the_shards_only(
    tmp_path: Path,
) -> None:
    """A two-source run of the real rules to the manifest, then a dry run after a weight edit."""
    code_dir, docs_dir = tmp_path / "raw" / "code", tmp_path / "raw" / "docs"
    code_dir.mkdir(parents=True)
    docs_dir.mkdir(parents=True)
    for name, text in small_modules():
        (code_dir / name).write_text(text, encoding="utf-8")
    for name, text in doc_sections():
        (docs_dir / f"{name}.txt").write_text(text, encoding="utf-8")
    sources = [
        {"name": "code", "path": str(code_dir), "weight": 1.0},
        {"name": "docs", "path": str(docs_dir), "weight": 3.0, "kind": "docs"},
    ]
    workdir = tmp_path / "work"
    workdir.mkdir()
    target = "results/shards/manifest.json"

    def run(*args: str, weights: tuple[float, float]) -> subprocess.CompletedProcess:
        chosen = [{**s, "weight": w} for s, w in zip(sources, weights, strict=True)]
        overlay = {"corpus": {"sources": chosen}}
        command = snakemake_command(workdir, *args, target, overlay=overlay)
        return subprocess.run(command, capture_output=True, text=True, timeout=600)

    result = run(weights=(1.0, 3.0))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    manifest = json.loads((workdir / target).read_text())
    rows = manifest["sources"]
    train = manifest["splits"]["train"]["tokens"]
    assert rows["code"]["tokens"]["train"] / train == pytest.approx(0.25, rel=0.05)
    assert rows["docs"]["tokens"]["train"] / train == pytest.approx(0.75, rel=0.05)
    assert set(rows["docs"]["tokens"]) == set(SPLITS) and rows["docs"]["weight"] == 3.0
    kept = [
        r for p in sorted(workdir.glob("results/dedup/part-*.jsonl.zst")) for r in iter_jsonl(p)
    ]
    assert {r["corpus"] for r in kept} == {"code", "docs"}
    assert {r["kind"] for r in kept if r["corpus"] == "docs"} == {"docs"}
    dedup = json.loads((workdir / "results/dedup/stats.json").read_text())
    assert set(dedup["corpus"]) == {"code", "docs"}

    report = tmp_path / "report"
    write_mixture(
        sorted(workdir.glob("results/clean/part-*.stats.json")),
        workdir / "results/dedup/stats.json",
        workdir / target,
        {"mixture": report / "mixture.html", "mixture_figure": report / "mixture.png"},
    )
    table = (report / "mixture.html").read_text()
    assert "<td>docs</td>" in table and '<td class="number">75</td>' in table
    assert (report / "mixture.png").read_bytes().startswith(b"\x89PNG")

    assert planned_jobs(run("-n", weights=(1.0, 3.0))) == {}
    jobs = planned_jobs(run("-n", weights=(1.0, 2.0)))
    assert jobs == {"shards": 2, "manifest": 1}


def test_source_config_errors_name_their_keys() -> None:
    sources = [
        {"name": "books", "path": "data/books", "weight": 0},
        {"name": "a/b", "path": ""},
        {"name": "books", "path": "data/more", "kind": "poetry"},
    ]
    errors = config_errors({"corpus": {"raw_dir": "data", "sources": sources}})
    expected = [
        "config key corpus.raw_dir: set it or corpus.sources, not both",
        "config key corpus.sources.0.weight: 0 is less than or equal to the minimum of 0",
        "config key corpus.sources.1.name: 'a/b' must be letters, digits",
        "config key corpus.sources.1.path:",
        "config key corpus.sources.2.name: 'books' names two sources",
        "config key corpus.sources.2.kind: 'poetry' is not one of",
    ]
    for start in expected:
        assert any(error.startswith(start) for error in errors), (start, errors)
    with pytest.raises(ConfigError, match="unknown key corpus.sources.0.wieght"):
        CorpusConfig(sources=[{"name": "a", "path": "p", "wieght": 2}])
