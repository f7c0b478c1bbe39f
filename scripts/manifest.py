"""Snakemake adapter: gather the shard parts into manifest.json."""

from pathlib import Path

from helox.common.logs import setup_logging
from helox.tokens.shards import SPLITS, write_manifest

setup_logging(snakemake.log[0])
manifest_path = Path(snakemake.output[0])
write_manifest(
    manifest_path.parent,
    list(snakemake.input.stats),
    {split: list(snakemake.input[split]) for split in SPLITS},
    snakemake.input.tokenizer,
    manifest_path,
)
