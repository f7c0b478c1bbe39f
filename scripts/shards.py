"""Snakemake adapter: tokenize deduplicated parts into each source's train shard and the val
and test shards."""

from pathlib import Path

from helox.common.config_files import section_from_dict
from helox.common.logs import setup_logging
from helox.tokens.shards import PartPaths, ShardsConfig, tokenize_part

setup_logging(snakemake.log[0])
output = snakemake.output
tokenize_part(
    list(snakemake.input.docs),
    snakemake.input.tokenizer,
    PartPaths(
        {Path(path).parent.name: Path(path) for path in output.train},
        Path(output.val),
        Path(output.test),
        Path(output.stats),
    ),
    section_from_dict(ShardsConfig, snakemake.params.shards, "shards"),
    seed=snakemake.params.seed,
    threads=snakemake.threads,
)
