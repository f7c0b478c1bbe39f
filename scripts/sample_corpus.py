"""Snakemake adapter: gather the standard library's sources as the default raw corpus."""

from helox.data.stdlib import gather_stdlib
from helox.logs import setup_logging

setup_logging(snakemake.log[0])
gather_stdlib(snakemake.output[0], snakemake.params.stdlib_max_bytes)
