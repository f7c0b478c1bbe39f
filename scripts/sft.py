"""Snakemake adapter: fine-tune the pretrained model on instruction data (through torchrun
when nproc or nodes > 1)."""

from helox.common.config_files import section_from_dict
from helox.common.logs import setup_logging
from helox.train.launch import launch_snakemake_job
from helox.tune.config import SFTConfig
from helox.tune.sft import SFTJob

setup_logging(snakemake.log[0])
config = section_from_dict(SFTConfig, snakemake.params.sft, "sft")
launch_snakemake_job(
    snakemake,
    SFTJob,
    pretrained_dir=snakemake.input.pretrained,
    data_path=snakemake.input.data,
    config=config,
)
