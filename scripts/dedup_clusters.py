"""Snakemake adapter: cluster exact and near duplicates across the signatures of every part."""

from helox.common.config_files import section_from_dict
from helox.common.logs import setup_logging
from helox.data.dedup import DedupConfig, cluster_parts

setup_logging(snakemake.log[0])
cluster_parts(
    list(snakemake.input.signatures),
    snakemake.output.duplicates,
    snakemake.output.stats,
    section_from_dict(DedupConfig, snakemake.params.dedup, "dedup"),
    clean_stats=list(snakemake.input.clean_stats),
)
