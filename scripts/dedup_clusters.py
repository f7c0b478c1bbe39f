"""Snakemake adapter: join the bucket jobs' pairs into clusters; each part's removed documents."""

from helox.common.logs import setup_logging
from helox.data.dedup_join import join_pairs

setup_logging(snakemake.log[0])
join_pairs(
    list(snakemake.input.signatures),
    list(snakemake.input.pairs),
    list(snakemake.output.removed),
    snakemake.output.stats,
    clean_stats=list(snakemake.input.clean_stats),
)
