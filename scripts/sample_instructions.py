"""Snakemake adapter: derive instruction pairs from the standard library's documented functions."""

from helox.common.logs import setup_logging
from helox.data.stdlib import derive_sft_pairs

setup_logging(snakemake.log[0])
derive_sft_pairs(
    snakemake.output[0],
    max_pairs=snakemake.params.max_pairs,
    max_response_chars=snakemake.params.max_response_chars,
    seed=snakemake.params.seed,
)
