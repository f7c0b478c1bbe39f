"""Snakemake adapter: train and evaluate the SentencePiece tokenizer."""

from pathlib import Path

from helox.config import TokenizerConfig, section_from_dict
from helox.logs import setup_logging
from helox.tokenizer import build_tokenizer

setup_logging(snakemake.log[0])
config = section_from_dict(TokenizerConfig, snakemake.params.tokenizer, "tokenizer")
build_tokenizer(
    list(snakemake.input), Path(snakemake.output.model).parent, config, threads=snakemake.threads
)
