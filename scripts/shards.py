"""Snakemake adapter: tokenize deduplicated parts into one Arrow shard per split."""

from helox.common.config_files import section_from_dict
from helox.common.logs import setup_logging
from helox.tokens.shards import ShardsConfig, mixture_factors, tokenize_part

setup_logging(snakemake.log[0])
weights = snakemake.params.weights
tokenize_part(
    list(snakemake.input.docs),
    snakemake.input.tokenizer,
    {split: snakemake.output[split] for split in ("train", "val", "test")},
    snakemake.output.stats,
    section_from_dict(ShardsConfig, snakemake.params.shards, "shards"),
    seed=snakemake.params.seed,
    threads=snakemake.threads,
    factors=mixture_factors(list(snakemake.input.counts), weights) if weights else None,
)
