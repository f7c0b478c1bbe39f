"""Snakemake adapter: preference-tune the SFT model (DPO; through torchrun when nproc or nodes
> 1)."""

from helox.common.config_files import section_from_dict
from helox.common.logs import setup_logging
from helox.train.lineage import stage_job_arguments
from helox.tune.dpo import DPOConfig, DPOJob, launch_dpo

setup_logging(snakemake.log[0])
job = DPOJob(
    sft_dir=snakemake.input.sft,
    data_path=snakemake.input.data,
    output_dir=snakemake.output[0],
    config=section_from_dict(DPOConfig, snakemake.params.dpo, "dpo"),
    **stage_job_arguments(snakemake),
)
launch_dpo(job, log_path=snakemake.log[0])
