"""Snakemake adapter: fine-tune the pretrained model on instruction data (through torchrun
when nproc or nodes > 1)."""

from helox.config import SFTConfig, section_from_dict
from helox.logs import setup_logging
from helox.sft import SFTJob, launch_sft
from helox.train.lineage import stage_job_arguments

setup_logging(snakemake.log[0])
job = SFTJob(
    pretrained_dir=snakemake.input.pretrained,
    data_path=snakemake.input.data,
    output_dir=snakemake.output[0],
    config=section_from_dict(SFTConfig, snakemake.params.sft, "sft"),
    **stage_job_arguments(snakemake),
)
launch_sft(job, log_path=snakemake.log[0])
