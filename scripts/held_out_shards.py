"""Snakemake adapter: the pipeline's val and test documents in a baseline's own tokens."""

from pathlib import Path

from helox.common.config_files import section_from_dict
from helox.common.logs import setup_logging
from helox.tokens.held_out import build_held_out_shards
from helox.tokens.shards import ShardsConfig

setup_logging(snakemake.log[0])
build_held_out_shards(
    list(snakemake.input.docs),
    snakemake.input.tokenizer,
    Path(snakemake.output.manifest).parent,
    section_from_dict(ShardsConfig, snakemake.params.shards, "shards"),
    seed=snakemake.params.seed,
    threads=snakemake.threads,
)
