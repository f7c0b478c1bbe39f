"""Snakemake adapter: pretrain the model on the token shards (through torchrun when nproc or
nodes > 1)."""

from helox.common.config_files import section_from_dict
from helox.common.logs import setup_logging
from helox.model.config import ModelConfig
from helox.train.config import TrainingConfig
from helox.train.lineage import stage_job_arguments
from helox.train.pretrain import PretrainJob, launch_pretrain

setup_logging(snakemake.log[0])
job = PretrainJob(
    manifest_path=snakemake.input.manifest,
    tokenizer_path=snakemake.input.tokenizer,
    output_dir=snakemake.output[0],
    model_config=section_from_dict(ModelConfig, snakemake.params.model, "model"),
    training_config=section_from_dict(TrainingConfig, snakemake.params.pretrain, "pretrain"),
    init_dir=snakemake.input.get("init") or None,
    **stage_job_arguments(snakemake),
)
launch_pretrain(job, log_path=snakemake.log[0])
