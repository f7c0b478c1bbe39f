"""Snakemake adapter: the data stages' tables and figures for the report."""

from helox.common.logs import setup_logging
from helox.pipeline.report import write_data_report

setup_logging(snakemake.log[0])
write_data_report(
    list(snakemake.input.clean_stats),
    snakemake.input.dedup_stats,
    snakemake.input.tokenizer_eval,
    snakemake.input.tokenizer,
    snakemake.input.manifest,
    dict(snakemake.output.items()),
)
