"""Snakemake adapter: gather the standard library's sources as the default raw corpus."""

from helox.common.logs import setup_logging
from helox.data.stdlib import gather_stdlib

setup_logging(snakemake.log[0])
gather_stdlib(snakemake.output[0], snakemake.params.stdlib_max_bytes)
