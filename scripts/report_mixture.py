"""Snakemake adapter: the mixture of sources for the report (what pretraining drew)."""

from pathlib import Path

from helox.common.logs import setup_logging
from helox.model.folder import METRICS_FILE
from helox.pipeline.report import write_mixture

setup_logging(snakemake.log[0])
write_mixture(
    list(snakemake.input.clean_stats),
    snakemake.input.dedup_stats,
    snakemake.input.manifest,
    Path(snakemake.input.pretrained) / METRICS_FILE,
    dict(snakemake.output.items()),
)
