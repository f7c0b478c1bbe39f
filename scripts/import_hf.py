"""Snakemake adapter: import the Hugging Face Llama folder a stage's `init_from` names."""

from helox.import_hf import import_llama
from helox.logs import setup_logging

setup_logging(snakemake.log[0])
import_llama(snakemake.input[0], snakemake.output[0])
