"""Snakemake adapter: pretrain the model on the token shards (through torchrun when nproc or
nodes > 1)."""

from helox.config import ModelConfig, TrainingConfig, section_from_dict
from helox.logs import setup_logging
from helox.pretrain import PretrainJob, launch_pretrain
from helox.train.lineage import stage_job_arguments

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
