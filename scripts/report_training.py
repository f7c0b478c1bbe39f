"""Snakemake adapter: one training stage's figures for the report."""

from pathlib import Path

from helox.common.logs import setup_logging
from helox.pipeline.report import write_training_figures

setup_logging(snakemake.log[0])
write_training_figures(
    Path(snakemake.input[0]) / "metrics.json",
    snakemake.wildcards.stage,
    dict(snakemake.output.items()),
)
