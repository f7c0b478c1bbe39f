"""Snakemake adapter: tokenize deduplicated parts into one Arrow shard per split."""

from helox.config import ShardsConfig, section_from_dict
from helox.logs import setup_logging
from helox.shards import mixture_factors, tokenize_part

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
