"""Snakemake adapter: remove exact duplicates across all cleaned parts."""

from helox.config import DedupConfig, section_from_dict
from helox.data.dedup import dedup_parts
from helox.logs import setup_logging

setup_logging(snakemake.log[0])
dedup_parts(
    list(snakemake.input.kept),
    list(snakemake.output.kept),
    snakemake.output.stats,
    section_from_dict(DedupConfig, snakemake.params.dedup, "dedup"),
    clean_stats=list(snakemake.input.stats),
)
