"""Snakemake adapter: samples of the base and SFT models after fixed prompts."""

from helox.common.logs import setup_logging
from helox.pipeline.samples import write_samples

setup_logging(snakemake.log[0])
write_samples(
    snakemake.input.pretrained, snakemake.input.sft, snakemake.output[0], snakemake.params.seed
)
