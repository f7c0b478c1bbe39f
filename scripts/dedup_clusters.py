"""Snakemake adapter: cluster exact and near duplicates across the signatures of every part."""

from helox.config import DedupConfig, section_from_dict
from helox.data.dedup import cluster_parts
from helox.logs import setup_logging

setup_logging(snakemake.log[0])
cluster_parts(
    list(snakemake.input.signatures),
    snakemake.output.duplicates,
    snakemake.output.stats,
    section_from_dict(DedupConfig, snakemake.params.dedup, "dedup"),
    clean_stats=list(snakemake.input.clean_stats),
)
