"""Snakemake adapter: count each source's tokens per split in the parts of one shards job."""

from helox.common.logs import setup_logging
from helox.tokens.shards import ShardsConfig, count_part

setup_logging(snakemake.log[0])
splits = dict(snakemake.params.splits)
seed = splits.pop("seed")
count_part(
    list(snakemake.input.docs),
    snakemake.input.tokenizer,
    snakemake.output[0],
    ShardsConfig(**splits),
    seed=seed,
    threads=snakemake.threads,
)
