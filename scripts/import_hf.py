"""Snakemake adapter: import the Hugging Face folder a stage's `init_from` names."""

from helox.common.logs import setup_logging
from helox.model.import_hf import import_hf_folder

setup_logging(snakemake.log[0])
import_hf_folder(snakemake.input[0], snakemake.output[0])
