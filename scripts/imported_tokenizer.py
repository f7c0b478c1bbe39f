"""Snakemake adapter: the imported model's tokenizer takes the tokenizer stage's place."""

from helox.common.logs import setup_logging
from helox.tokens.tokenizer import adopt_tokenizer

setup_logging(snakemake.log[0])
adopt_tokenizer(
    snakemake.input.folder,
    list(snakemake.input.documents),
    snakemake.output.folder,
    snakemake.output.eval,
    snakemake.params.eval_docs,
)
