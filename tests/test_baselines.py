"""eval.baselines: an imported model of another tokenizer scored on the tiny pipeline's own
held-out documents, as one more column of the eval card, without outdating anything else."""

from __future__ import annotations

import html
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_eval_stage import STAGES
from test_import_hf import llama_folder
from test_workflow import TINY, helox_cli, planned_jobs, snakemake

from helox.eval.bpb import evaluate_folder
from helox.eval.card import FOOTNOTE, comparable
from helox.pipeline.config import config_errors, resolve_config
from helox.tokens.shards import read_shard
from helox.tokens.vocab import load_tokenizer

NAME = "tiny-llama"
CARD = "results/report/eval/card.html"
# What eval.baselines adds to the card's jobs: its own three and the card itself.
BASELINE_JOBS = {
    "import_baseline": 1,
    "held_out_shards": 1,
    "evaluate_baseline": 1,
    "report_eval": 1,
}


@dataclass
class BaselineRun:
    """A copy of the tiny pipeline that scored baseline NAME, and the jobs a dry run planned
    for the card first."""

    workdir: Path
    planned: dict[str, int]


@pytest.fixture(scope="module")
def baseline_run(pipeline, evaluated, spm_model, tmp_path_factory) -> BaselineRun:
    """The pipeline (its stages evaluated) copied, then its card built with a baseline whose
    SentencePiece vocabulary is not the pipeline's."""
    root = tmp_path_factory.mktemp("baselines")
    workdir = root / "pipeline"
    shutil.copytree(pipeline, workdir, symlinks=True)
    source = root / "hf"
    vocab_size = load_tokenizer(spm_model).vocab_size
    llama_folder(source, spm_model, vocab_size=vocab_size, max_position_embeddings=256)
    overlay = {"eval": {"baselines": [{"name": NAME, "path": str(source)}]}}
    planned = planned_jobs(snakemake(workdir, "-n", CARD, overlay=overlay))
    result = snakemake(workdir, CARD, overlay=overlay)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return BaselineRun(workdir, planned)


def decoded_split(shards: Path, tokenizer_folder: Path, split: str) -> list[str]:
    """The text of every document of one split of a shards folder, in file order."""
    tokenizer = load_tokenizer(tokenizer_folder)
    manifest = json.loads((shards / "manifest.json").read_text())
    return [
        tokenizer.decode(ids)
        for name in manifest["splits"][split]["files"]
        for ids in read_shard(shards / name).column("tokens").to_pylist()
    ]


def test_a_baseline_adds_only_its_own_jobs(baseline_run):
    """Its import, held-out shards and evaluation, and the card: no stage's evaluation, nor
    anything upstream of them, is outdated by eval.baselines."""
    assert baseline_run.planned == BASELINE_JOBS


def test_held_out_documents_are_the_pipelines_val_and_test(baseline_run):
    results = baseline_run.workdir / "results"
    ours = results / "eval/baselines" / NAME / "shards"
    ours_manifest = json.loads((ours / "manifest.json").read_text())
    pipeline_manifest = json.loads((results / "shards/manifest.json").read_text())
    assert ours_manifest["tokenizer_sha256"] != pipeline_manifest["tokenizer_sha256"]
    assert ours_manifest["source_sha256"] == pipeline_manifest["source_sha256"]
    assert set(ours_manifest["splits"]) == {"val", "test"}
    for split in ("val", "test"):
        for key in ("documents", "bytes"):
            assert ours_manifest["splits"][split][key] == pipeline_manifest["splits"][split][key]
        theirs = decoded_split(results / "shards", results / "tokenizer/files", split)
        assert theirs and decoded_split(ours, results / "import/baseline" / NAME, split) == theirs


def test_card_shows_the_baseline_after_the_stages(baseline_run):
    """Its bits per byte are evaluate_folder's on its own held-out shards; no unigram model
    (it has no train split); the card marks the rows that compare across tokenizers."""
    results = baseline_run.workdir / "results"
    scored = json.loads((results / f"eval/baselines/{NAME}.json").read_text())
    assert scored["baseline"] is True and scored["stage"] == NAME
    direct = evaluate_folder(
        results / "import/baseline" / NAME,
        results / "eval/baselines" / NAME / "shards",
        split="val",
        seq_len=TINY["pretrain"]["seq_len"],
        max_batches=TINY["eval"]["bpb_max_batches"],
        device="cpu",
    )
    assert scored["bpb"]["val"]["bpb"] == pytest.approx(direct["bpb"], rel=1e-5)
    assert "unigram_bpb" not in scored["bpb"]["val"]
    assert scored["humaneval"]["attempted"] == TINY["eval"]["humaneval"]["limit"]
    assert 0 <= scored["tasks"]["next_line"]["accuracy_norm"] <= 1

    paths = [str(results / f"eval/{stage}.json") for stage in STAGES]
    printed = helox_cli("eval", "--card", str(results / f"eval/baselines/{NAME}.json"), *paths)
    assert printed.returncode == 0, printed.stderr
    header, *lines = printed.stdout.splitlines()
    assert header.split() == ["metric", "baseline", *STAGES, NAME, "(baseline)"]
    val_row = next(line for line in lines if line.startswith("val bits per byte"))
    assert val_row.startswith(comparable("val bits per byte (unigram baseline)"))
    assert val_row.split()[-1] == f"{scored['bpb']['val']['bpb']:.4f}"
    assert comparable("next_line per-byte accuracy (3-shot)") in printed.stdout
    assert lines[-1] == FOOTNOTE
    card = html.unescape((baseline_run.workdir / CARD).read_text())
    assert f"<th>dpo</th><th>{NAME} (baseline)</th>" in card and FOOTNOTE in card


@pytest.mark.parametrize(
    ("baselines", "message"),
    [
        ([{"name": "sft", "path": "m"}], "eval.baselines.0.name: 'sft' is a training stage's"),
        ([{"name": "a", "path": "m"}, {"name": "a", "path": "n"}], "1.name: 'a' names two"),
        ([{"name": "../up", "path": "m"}], "eval.baselines.0.name: '../up' does not match"),
        ([{"name": "q", "path": "no/such/model"}], "no/such/model is not a folder"),
    ],
)
def test_a_bad_baseline_is_refused_by_its_key(baselines, message):
    errors = config_errors(resolve_config({"eval": {"baselines": baselines}}))
    assert any(message in error for error in errors), errors
