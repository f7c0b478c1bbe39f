"""Sources mixed by weight at training time: each source tokenized once into its own train
shards, every step's rows drawn from them by weight (deterministic, resumable exactly),
validation and test as they come; a weight edit reruns training only."""

from __future__ import annotations

import dataclasses
import json
import logging
import pydoc_data.topics
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import STDLIB
from test_train import TRAINING
from test_workflow import planned_jobs, snakemake_command
from tiny_models import tiny_config

from helox.common.config_files import ConfigError
from helox.common.io import JsonlWriter, iter_jsonl, read_json
from helox.data.corpus import CorpusConfig
from helox.pipeline.config import config_errors
from helox.pipeline.report import write_mixture
from helox.tokens.loader import TokenStream
from helox.tokens.mixture import MixedBatches, MixtureError, assign_rows, mixed_batches
from helox.tokens.shards import SPLITS, ShardsConfig, build_dataset_shards, read_shard
from helox.tokens.tokenizer import TokenizerConfig, build_tokenizer
from helox.tokens.vocab import SPECIAL_IDS, load_tokenizer
from helox.train.loop import Trainer
from helox.train.pretrain import run_pretrain
from helox.train.tracking import TrackingConfig

WEIGHTS = {"code": 1.0, "docs": 3.0}
SOURCES = tuple(WEIGHTS)
SEQ_LEN = 32


@pytest.mark.parametrize(
    "weights", [[1.0, 3.0], [0.07, 0.93], [5.0, 1.0, 1.0], [0.5, 0.2, 0.2, 0.05, 0.05]]
)
def test_every_prefix_of_the_rows_follows_the_weights_to_about_a_row(weights) -> None:
    shares = [weight / sum(weights) for weight in weights]
    drawn = [0] * len(shares)
    sources = assign_rows(shares, drawn, 0, 5000)
    counts = np.zeros(len(shares))
    for row, source in enumerate(sources, start=1):
        counts[source] += 1
        assert np.abs(counts - np.asarray(shares) * row).max() < 1.5
    assert drawn == counts.tolist()
    # Drawn in pieces from where the last piece stopped, the rows are the same.
    again, rows = [0] * len(shares), 0
    pieces = []
    for count in (7, 1, 300, 4692):
        pieces += assign_rows(shares, again, rows, count)
        rows += count
    assert pieces == sources


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
    records = [
        {"text": t, "source": n, "kind": "code", "corpus": "code"} for n, t in small_modules()
    ]
    records += [
        {"text": t, "source": n, "kind": "docs", "corpus": "docs"} for n, t in doc_sections()
    ]
    paths = [folder / f"part-{i}.jsonl.zst" for i in range(2)]
    writers = [JsonlWriter(path) for path in paths]
    for index, record in enumerate(records):
        writers[index % 2].write(record)
    for writer in writers:
        writer.close()
    return paths


@pytest.fixture(scope="module")
def two_sources(tmp_path_factory) -> Path:
    """The shards folder of a code source and a docs source, with its tokenizer beside it."""
    root = tmp_path_factory.mktemp("mixture")
    parts = write_source_parts(root)
    build_tokenizer(parts, root / "tok", TokenizerConfig(vocab_size=1000, eval_docs=5))
    config = ShardsConfig(parts=2, train_split=0.8, val_split=0.1, test_split=0.1)
    build_dataset_shards(parts, root / "tok" / "spm.model", root / "shards", config, 5, 1, SOURCES)
    return root / "shards"


def shard_rows(shards: Path, files: list[str]) -> list[tuple[int, ...]]:
    return [
        tuple(row) for f in files for row in read_shard(shards / f).column("tokens").to_pylist()
    ]


def test_each_source_is_tokenized_once_into_its_own_train_shards(two_sources: Path) -> None:
    manifest = read_json(two_sources / "manifest.json")
    sources = manifest["sources"]
    assert sorted(sources) == sorted(SOURCES)
    for name, row in sources.items():
        assert row["train_files"] == [f"train/{name}/part-{i}.arrow" for i in range(2)]
        assert len(shard_rows(two_sources, row["train_files"])) == row["documents"]["train"]
    for split in SPLITS:
        for key in ("documents", "tokens", "bytes"):
            total = sum(row[key][split] for row in sources.values())
            assert total == manifest["splits"][split][key], (split, key)
    # Every document once, in one split: its source's train shard, or val or test.
    processor = load_tokenizer(two_sources.parent / "tok" / "spm.model")
    records = [r for part in sorted(two_sources.parent.glob("part-*")) for r in iter_jsonl(part)]
    expected = [tuple(processor.encode(r["text"]) + [SPECIAL_IDS["</s>"]]) for r in records]
    written = [
        row
        for split in SPLITS
        for row in shard_rows(two_sources, manifest["splits"][split]["files"])
    ]
    assert sorted(written) == sorted(expected)
    # Validation and test hold both sources' documents, as they come.
    for split in ("val", "test"):
        assert manifest["splits"][split]["files"] == [f"{split}/part-{i}.arrow" for i in range(2)]
        assert all(row["documents"][split] > 0 for row in sources.values())
    assert "weight" not in json.dumps(manifest)


def test_mixed_batches_are_deterministic_and_resume_on_any_split_of_the_batch(
    two_sources: Path,
) -> None:
    manifest = two_sources / "manifest.json"

    def batches(seed=1, batch_size=4, **ranks) -> MixedBatches:
        return mixed_batches(manifest, WEIGHTS, SEQ_LEN, batch_size, seed, **ranks)

    def first_rows(loader: MixedBatches) -> torch.Tensor:
        return torch.cat([next(loader)[0] for _ in range(5)])

    assert torch.equal(first_rows(batches()), first_rows(batches()))
    assert not torch.equal(first_rows(batches()), first_rows(batches(seed=2)))

    whole = batches(batch_size=4)
    ranks = [batches(batch_size=2, rank=rank, world_size=2) for rank in (0, 1)]
    for _ in range(6):
        assert torch.equal(torch.cat([next(r)[0] for r in ranks]), next(whole)[0])
    state = json.loads(json.dumps(whole.state()))
    assert state == {"rows": 24, "drawn": {"code": 6, "docs": 18}}
    expected = [next(whole)[0] for _ in range(8)]
    resumed = batches(batch_size=1)  # one row a micro-batch: the same rows, four times as many
    resumed.load_state(state)
    assert torch.equal(torch.cat(expected), torch.cat([next(resumed)[0] for _ in range(32)]))


def test_each_source_cycles_through_its_own_shuffled_windows(two_sources: Path) -> None:
    manifest = two_sources / "manifest.json"
    loader = mixed_batches(manifest, {"code": 1.0, "docs": 1.0}, SEQ_LEN, 8, seed=3)
    code = TokenStream(manifest, "train", "code")
    windows = loader.windows[loader.names.index("code")]
    drawn = windows.take(0, 2 * windows.count)
    epochs = drawn[: windows.count], drawn[windows.count :]
    assert all(sorted(epoch) == list(range(code.num_windows(SEQ_LEN))) for epoch in epochs)
    assert not np.array_equal(*epochs)
    rows = [next(loader)[0] for _ in range(3)]
    assert torch.cat(rows).shape == (24, SEQ_LEN)
    assert loader.state()["drawn"] == {"code": 12, "docs": 12}


def test_weights_must_name_the_sources_of_the_shards(two_sources: Path) -> None:
    manifest = two_sources / "manifest.json"
    with pytest.raises(MixtureError, match=r"the weights name \['books', 'code'\]"):
        mixed_batches(manifest, {"code": 1.0, "books": 1.0}, SEQ_LEN, 4, seed=1)
    loader = mixed_batches(manifest, None, SEQ_LEN, 4, seed=1)
    tokens = {name: TokenStream(manifest, "train", name).num_tokens for name in SOURCES}
    assert loader.shares_by_source() == pytest.approx(
        {name: count / sum(tokens.values()) for name, count in tokens.items()}
    )


def test_a_source_repeated_past_four_epochs_is_named(two_sources: Path, caplog) -> None:
    loader = mixed_batches(two_sources / "manifest.json", {"code": 1, "docs": 9}, SEQ_LEN, 4, 1)
    docs_windows = loader.windows[loader.names.index("docs")].count
    with caplog.at_level(logging.WARNING, logger="helox.tokens.mixture"):
        epochs = loader.planned_epochs(rows=5 * docs_windows)
    assert epochs["docs"] == pytest.approx(4.5) and epochs["code"] < 4
    (message,) = [record.getMessage() for record in caplog.records]
    assert message.startswith("corpus source 'docs': its weight's share of 90.0%")
    assert "about 4.5 times" in message and "corpus.sources" in message


def pretrain(two_sources: Path, output: Path) -> dict:
    """16 steps of 2 micro-batches of 4 rows of a tiny model on the two sources, 1:3."""
    return run_pretrain(
        two_sources / "manifest.json",
        two_sources.parent / "tok" / "spm.model",
        output,
        tiny_config(1000, SEQ_LEN, hidden_size=32, num_layers=1, num_attention_heads=2),
        dataclasses.replace(TRAINING, seq_len=SEQ_LEN, total_steps=16, eval_steps=16),
        seed=4,
        tracking=TrackingConfig(enabled=False),
        threads=1,
        weights=WEIGHTS,
    )


class Killed(Exception):
    """Stands in for the process being killed."""


@pytest.mark.usefixtures("one_thread")
def test_pretraining_on_two_sources_resumes_exactly_and_records_what_it_drew(
    two_sources: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = pretrain(two_sources, tmp_path / "whole" / "final")
    drawn = whole["sources"]
    assert sum(row["train_tokens"] for row in drawn.values()) == whole["train_tokens_seen"]
    for name, weight in WEIGHTS.items():
        share = drawn[name]["train_tokens"] / whole["train_tokens_seen"]
        assert share == pytest.approx(weight / sum(WEIGHTS.values()), rel=0.02)
        windows = (drawn[name]["available_tokens"] - 1) // SEQ_LEN
        assert drawn[name]["epochs"] == drawn[name]["train_tokens"] / SEQ_LEN / windows
    assert read_json(tmp_path / "whole" / "final" / "metrics.json")["sources"] == drawn

    train_step = Trainer.train_step

    def killed_after_step_10(trainer: Trainer):
        result = train_step(trainer)
        if result.step == 10:
            raise Killed
        return result

    monkeypatch.setattr(Trainer, "train_step", killed_after_step_10)
    with pytest.raises(Killed):
        pretrain(two_sources, tmp_path / "killed" / "final")
    monkeypatch.undo()
    checkpoints = tmp_path / "killed" / "checkpoints"
    assert sorted(path.name for path in checkpoints.iterdir()) == ["step_4", "step_8"]
    resumed = pretrain(two_sources, tmp_path / "killed" / "final")
    assert resumed["loss_history"] == whole["loss_history"]
    assert resumed["sources"] == drawn and resumed["val_loss"] == whole["val_loss"]


def test_the_workflow_mixes_two_sources_and_a_weight_edit_reruns_training_only(
    tmp_path: Path,
) -> None:
    """Two sources through the real rules to pretraining, the report's mixture table of what
    it drew, then a dry run after a weight edit."""
    code_dir, docs_dir = tmp_path / "raw" / "code", tmp_path / "raw" / "docs"
    code_dir.mkdir(parents=True)
    docs_dir.mkdir(parents=True)
    for name, text in small_modules():
        (code_dir / name).write_text(text, encoding="utf-8")
    for name, text in doc_sections():
        (docs_dir / f"{name}.txt").write_text(text, encoding="utf-8")
    sources = [
        {"name": "code", "path": str(code_dir)},
        {"name": "docs", "path": str(docs_dir), "kind": "docs"},
    ]
    workdir = tmp_path / "work"
    workdir.mkdir()
    target = "results/pretrain/final"

    def run(*args: str, weights: tuple[float, float]) -> subprocess.CompletedProcess:
        chosen = [{**s, "weight": w} for s, w in zip(sources, weights, strict=True)]
        overlay = {
            "corpus": {"sources": chosen},
            "clean": {"parts": 1},
            "shards": {"parts": 1, "train_split": 0.8, "val_split": 0.1, "test_split": 0.1},
            "pretrain": {"seq_len": 32, "batch_size": 8, "total_steps": 10, "eval_steps": 10},
            "tracking": {"enabled": False},
        }
        command = snakemake_command(workdir, *args, target, overlay=overlay)
        return subprocess.run(command, capture_output=True, text=True, timeout=600)

    result = run(weights=(1.0, 3.0))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    results = workdir / "results"
    manifest = read_json(results / "shards/manifest.json")
    assert sorted(manifest["sources"]) == ["code", "docs"]
    for name in ("code", "docs"):
        assert (results / f"shards/train/{name}/part-0.arrow").is_file()
    kept = [r for p in results.glob("dedup/part-*.jsonl.zst") for r in iter_jsonl(p)]
    assert {r["kind"] for r in kept if r["corpus"] == "docs"} == {"docs"}
    drawn = read_json(results / "pretrain/final/metrics.json")["sources"]
    tokens = sum(row["train_tokens"] for row in drawn.values())
    assert drawn["docs"]["train_tokens"] / tokens == pytest.approx(0.75, rel=0.02)

    report = tmp_path / "report"
    write_mixture(
        sorted(results.glob("clean/part-*.stats.json")),
        results / "dedup/stats.json",
        results / "shards/manifest.json",
        results / "pretrain/final/metrics.json",
        {"mixture": report / "mixture.html", "mixture_figure": report / "mixture.png"},
    )
    table = (report / "mixture.html").read_text()
    assert "<td>docs</td>" in table and '<td class="number">75</td>' in table
    assert (report / "mixture.png").read_bytes().startswith(b"\x89PNG")

    assert planned_jobs(run("-n", weights=(1.0, 2.0))) == {"pretrain": 1}


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
