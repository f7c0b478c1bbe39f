"""Snakemake adapter: derive preference pairs (real function vs. swapped statements) from SFT's."""

from helox.dpo_data import derive_preference_pairs
from helox.logs import setup_logging

setup_logging(snakemake.log[0])
derive_preference_pairs(
    snakemake.input[0],
    snakemake.output[0],
    max_pairs=snakemake.params.max_pairs,
    seed=snakemake.params.seed,
)
