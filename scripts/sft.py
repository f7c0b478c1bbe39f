"""Snakemake adapter: fine-tune the pretrained model on instruction data (through torchrun
when nproc or nodes > 1)."""

from helox.common.config_files import section_from_dict
from helox.common.logs import setup_logging
from helox.train.lineage import stage_job_arguments
from helox.tune.sft import SFTConfig, SFTJob, launch_sft

setup_logging(snakemake.log[0])
job = SFTJob(
    pretrained_dir=snakemake.input.pretrained,
    data_path=snakemake.input.data,
    output_dir=snakemake.output[0],
    config=section_from_dict(SFTConfig, snakemake.params.sft, "sft"),
    **stage_job_arguments(snakemake),
)
launch_sft(job, log_path=snakemake.log[0])
