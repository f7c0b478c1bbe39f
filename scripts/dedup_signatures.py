"""Snakemake adapter: the dedup index (text hashes, MinHash signatures, band lanes) of one part."""

from helox.common.logs import setup_logging
from helox.data.dedup_index import IndexSettings, sign_part

setup_logging(snakemake.log[0])
sign_part(snakemake.input[0], snakemake.output[0], IndexSettings(**snakemake.params.index))
