"""Snakemake adapter: derive preference pairs (real function vs. swapped statements) from SFT's."""

from helox.common.logs import setup_logging
from helox.tune.dpo_data import derive_preference_pairs

setup_logging(snakemake.log[0])
derive_preference_pairs(
    snakemake.input[0],
    snakemake.output[0],
    max_pairs=snakemake.params.max_pairs,
    seed=snakemake.params.seed,
)
