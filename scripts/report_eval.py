"""Snakemake adapter: the eval card, every model stage beside the baselines."""

from helox.common.logs import setup_logging
from helox.eval.card import write_card_html

setup_logging(snakemake.log[0])
write_card_html(list(snakemake.input), snakemake.output[0])
