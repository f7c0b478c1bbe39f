"""Snakemake adapter: the eval card, every model stage beside the baselines."""

from helox.eval.card import write_card_html
from helox.logs import setup_logging

setup_logging(snakemake.log[0])
write_card_html(list(snakemake.input), snakemake.output[0])
