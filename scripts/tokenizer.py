"""Snakemake adapter: train and evaluate the SentencePiece tokenizer."""

from pathlib import Path

from helox.common.config_files import section_from_dict
from helox.common.logs import setup_logging
from helox.tokens.tokenizer import TokenizerConfig, build_tokenizer

setup_logging(snakemake.log[0])
config = section_from_dict(TokenizerConfig, snakemake.params.tokenizer, "tokenizer")
build_tokenizer(
    list(snakemake.input),
    Path(snakemake.output.eval).parent,
    config,
    threads=snakemake.threads,
    model_path=Path(snakemake.output.folder) / "tokenizer.model",
)
