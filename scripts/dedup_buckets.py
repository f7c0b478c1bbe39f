"""Snakemake adapter: the duplicate pairs of one bucket job's range of keys, over every part."""

from helox.common.config_files import section_from_dict
from helox.common.logs import setup_logging
from helox.data.dedup import DedupConfig
from helox.data.dedup_pairs import find_pairs

setup_logging(snakemake.log[0])
config = section_from_dict(DedupConfig, snakemake.params.dedup, "dedup")
find_pairs(
    list(snakemake.input),
    int(snakemake.wildcards.bucket),
    config.bucket_jobs,
    snakemake.output[0],
    config,
)
