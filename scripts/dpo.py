"""Snakemake adapter: preference-tune the SFT model (DPO; through torchrun when nproc or nodes
> 1)."""

from helox.common.config_files import section_from_dict
from helox.common.logs import setup_logging
from helox.train.launch import launch_snakemake_job
from helox.tune.config import DPOConfig
from helox.tune.dpo import DPOJob

setup_logging(snakemake.log[0])
config = section_from_dict(DPOConfig, snakemake.params.dpo, "dpo")
launch_snakemake_job(
    snakemake, DPOJob, sft_dir=snakemake.input.sft, data_path=snakemake.input.data, config=config
)
