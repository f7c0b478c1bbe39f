"""Shared fixtures: small corpora made of real text (the standard library's own sources)."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest

from helox.common.io import JsonlWriter

STDLIB = Path(sysconfig.get_paths()["stdlib"])

# The helper modules that hold assertions, so that pytest explains their failures too.
pytest.register_assert_rewrite("process_runs")


def stdlib_sources(count: int, max_bytes: int = 60_000) -> list[tuple[str, str]]:
    """The first `count` top-level standard-library modules under `max_bytes`, as (name, text)."""
    found = []
    for path in sorted(STDLIB.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        if 500 < len(text.encode()) <= max_bytes:
            found.append((path.name, text))
        if len(found) == count:
            break
    return found


@pytest.fixture(scope="session")
def doc_parts(tmp_path_factory) -> list[Path]:
    """Two JSONL.zst parts of real documents, as the dedup stage writes them."""
    folder = tmp_path_factory.mktemp("dedup")
    sources = stdlib_sources(80)
    paths = []
    for index in range(2):
        path = folder / f"part-{index}.jsonl.zst"
        with JsonlWriter(path) as writer:
            for name, text in sources[index::2]:
                writer.write({"text": text, "source": name, "kind": "code"})
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def spm_model(doc_parts, tmp_path_factory) -> Path:
    """A small real SentencePiece model with Helox's special tokens and byte fallback."""
    from helox.tokens.tokenizer import TokenizerConfig, train_tokenizer

    config = TokenizerConfig(vocab_size=400, max_train_bytes=200_000)
    return train_tokenizer(
        doc_parts, tmp_path_factory.mktemp("spm") / "spm.model", config, threads=1
    )


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    """Shards of 200 train and 10 val documents of tests/test_train.py's patterns, enough for
    the runs in several processes (tests/test_train.py and tests/test_loader.py use their own)."""
    from test_loader import write_shards
    from test_train import patterned_documents

    splits = {"train": patterned_documents(200, 0), "val": patterned_documents(10, 1)}
    return write_shards(tmp_path / "shards", splits, files_per_split=2, vocab_size=16)


@pytest.fixture(scope="session")
def real_tokenizers() -> Path:
    """The cache folder of the real tokenizer files of tests/real_tokenizers.py, fetched once
    per machine; the tests that need them skip, saying why, where they cannot be had."""
    from real_tokenizers import SOURCES, cache_dir, fetch

    try:
        for name in SOURCES:
            fetch(name)
    except RuntimeError as error:
        pytest.skip(f"the real tokenizer files cannot be fetched: {error}")
    return cache_dir()


@pytest.fixture
def one_thread():
    """Tiny models gain nothing from threads, and lose much when the cores are busy."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory) -> Path:
    """The tiny workflow of test_workflow.py run once to results/dpo/final, shared by every
    test module that reads what it wrote."""
    from test_workflow import snakemake

    workdir = tmp_path_factory.mktemp("pipeline")
    result = snakemake(workdir, "results/dpo/final")
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    return workdir


@pytest.fixture(scope="session")
def evaluated(pipeline) -> dict[str, dict]:
    """results/eval/{stage}.json of the tiny pipeline, built by Snakemake."""
    import json

    from test_workflow import snakemake

    stages = ("pretrain", "sft", "dpo")
    targets = [f"results/eval/{stage}.json" for stage in stages]
    result = snakemake(pipeline, *targets)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return {
        stage: json.loads((pipeline / target).read_text())
        for stage, target in zip(stages, targets, strict=True)
    }


# The longest groups, longest first (seconds each took in a full run on 2 cores): started first,
# so that the workers finish together (pyproject's --no-loadscope-reorder keeps this order).
LONGEST_GROUPS = (
    "test_slurm",  # 340, mostly waiting on the Slurm queue
    "pipeline",  # 190
    "test_open_model_pipeline",  # 150
    "test_dpo",  # 80
    "test_distributed",  # 55
    "test_resume",  # 55
    "test_multinode",  # 45
    "test_lora",  # 45
    "test_import_hf",  # 40
    "test_mixture",  # 40
    "test_lm_eval",  # 30
    "test_model_tokenizers",  # 30
    "test_profiles",  # 27
    "test_faults_kill",  # 24
    "test_hf_families",  # 20
)


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`--dist loadgroup`) keep each module's tests in one worker, so its
    module fixtures run once, and every test that reads the tiny pipeline in the same one."""
    groups = {}
    for item in items:
        uses_pipeline = "pipeline" in getattr(item, "fixturenames", ())
        groups[item] = "pipeline" if uses_pipeline else item.module.__name__
        item.add_marker(pytest.mark.xdist_group(groups[item]))
    rank = {group: index for index, group in enumerate(LONGEST_GROUPS)}
    items.sort(key=lambda item: rank.get(groups[item], len(rank)))
