"""`snakemake --report` on the tiny pipeline holds every table, figure and sample, captioned."""

from __future__ import annotations

import base64
import html
import json
import re

from test_workflow import snakemake

from helox.pipeline.samples import BASE_PROMPTS, CHAT_PROMPTS

PNG = b"\x89PNG\r\n\x1a\n"
TRAINING_FIGURES = ("loss", "bpb", "lr", "throughput")
STAGES = ("pretrain", "sft", "dpo")
REPORT_JOBS = ("data", "mixture", *STAGES, "samples", "eval")


def embedded_results(report: str, name: str = "results") -> dict[str, dict]:
    """What a self-contained Snakemake report embeds as `var {name}`: results by path, or
    categories with the paths they hold."""
    pattern = rf'<script id="{name}">\s*var {name} = (.*?);\s*</script>'
    return json.loads(re.search(pattern, report, re.S)[1])


def content(result: dict) -> bytes:
    """The bytes of an embedded result (a base64 data URI)."""
    return base64.b64decode(result["data_uri"].split("base64,", 1)[1])


def test_report_holds_every_table_figure_and_sample_with_a_caption(pipeline, tmp_path):
    """The README's report command, right after the models were built (no evaluation and no
    report part yet), builds the parts that are missing and then the report."""
    report_path = tmp_path / "report.html"
    made = snakemake(pipeline, "--report", str(report_path), "--report-after-run")
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]
    report = report_path.read_text(encoding="utf-8")
    results = embedded_results(report)

    report_dir = "results/report"
    figures = {
        f"{report_dir}/data/{n}.png" for n in ("duplicate_clusters", "tokens_per_split", "mixture")
    }
    figures |= {f"{report_dir}/{s}/{f}.png" for s in STAGES for f in TRAINING_FIGURES}
    pages = {f"{report_dir}/data/{n}.html" for n in ("filters", "sources", "tokenizer", "mixture")}
    pages |= {f"{report_dir}/samples.html", f"{report_dir}/eval/card.html"}
    assert set(results) == figures | pages
    for path, result in results.items():
        assert result["caption"].strip(), f"{path} has no caption"
    for path in figures:
        assert content(results[path]).startswith(PNG), path
    page = {path: html.unescape(content(results[path]).decode()) for path in pages}

    clean_stats = json.loads((pipeline / "results/clean/part-0.stats.json").read_text())
    filters = page["results/report/data/filters.html"]
    for name in [*clean_stats["filters"], "exact_duplicate", "near_duplicate"]:
        assert f"<td>{name}</td>" in filters, name
    assert "Bytes removed" in filters and "Documents kept" in filters
    sources = page["results/report/data/sources.html"]
    assert "By kind" in sources and next(iter(clean_stats["sources"])) in sources
    tokenizer = page["results/report/data/tokenizer.html"]
    assert "Bytes per token" in tokenizer and "most frequent pieces" in tokenizer
    samples = page["results/report/samples.html"]
    assert all(prompt in samples for prompt in (*BASE_PROMPTS, *CHAT_PROMPTS))
    assert "Base model" in samples and "SFT model" in samples
    card = page["results/report/eval/card.html"]
    assert "<th>pretrain</th><th>sft</th><th>dpo</th>" in card and "HumanEval pass@1" in card
    assert "next_line accuracy (3-shot)" in card and "val bits per byte" in card
    categories = embedded_results(report, "categories")
    assert "results/report/eval/card.html" in json.dumps(categories["Evaluation"])
    assert "Bits per byte of pretrain" in results["results/report/pretrain/bpb.png"]["caption"]
    assert "Helox turns a folder" in report  # the workflow description

    for job in REPORT_JOBS:
        assert (pipeline / "logs" / "report" / f"{job}.log").is_file(), job
        assert (pipeline / "logs" / "benchmarks" / "report" / f"{job}.tsv").is_file(), job
