"""Snakemake adapter: text hashes and MinHash signatures of the documents of one cleaned part."""

from helox.common.logs import setup_logging
from helox.data.dedup import sign_part
from helox.data.minhash import MinHasher

setup_logging(snakemake.log[0])
sign_part(snakemake.input[0], snakemake.output[0], MinHasher(**snakemake.params.minhash))
