"""Snakemake adapter: the next-line multiple-choice task, from the held-out test split."""

from helox.common.config_files import section_from_dict
from helox.common.logs import setup_logging
from helox.eval.config import NextLineTaskConfig
from helox.eval.next_line import build_next_line_task

setup_logging(snakemake.log[0])
build_next_line_task(
    snakemake.input.manifest,
    snakemake.input.tokenizer,
    snakemake.output[0],
    section_from_dict(NextLineTaskConfig, snakemake.params.next_line, "eval.next_line"),
    snakemake.params.seed,
)
