"""Snakemake adapter: preference-tune the SFT model (DPO; through torchrun when nproc or nodes
> 1)."""

from helox.config import DPOConfig, section_from_dict
from helox.dpo import DPOJob, launch_dpo
from helox.logs import setup_logging
from helox.train.lineage import stage_job_arguments

setup_logging(snakemake.log[0])
job = DPOJob(
    sft_dir=snakemake.input.sft,
    data_path=snakemake.input.data,
    output_dir=snakemake.output[0],
    config=section_from_dict(DPOConfig, snakemake.params.dpo, "dpo"),
    **stage_job_arguments(snakemake),
)
launch_dpo(job, log_path=snakemake.log[0])
