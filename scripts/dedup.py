"""Snakemake adapter: copy one cleaned part without the duplicates the join removed."""

from helox.common.logs import setup_logging
from helox.data.dedup import filter_part

setup_logging(snakemake.log[0])
filter_part(snakemake.input.kept, snakemake.input.removed, snakemake.output[0])
