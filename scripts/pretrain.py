"""Snakemake adapter: pretrain the model on the token shards (through torchrun when nproc or
nodes > 1)."""

from helox.config import ModelConfig, TrackingConfig, TrainingConfig, section_from_dict
from helox.logs import setup_logging
from helox.pretrain import PretrainJob, launch_pretrain
from helox.train.lineage import snakemake_job

setup_logging(snakemake.log[0])
job = PretrainJob(
    manifest_path=snakemake.input.manifest,
    tokenizer_path=snakemake.input.tokenizer,
    output_dir=snakemake.output[0],
    model_config=section_from_dict(ModelConfig, snakemake.params.model, "model"),
    training_config=section_from_dict(TrainingConfig, snakemake.params.pretrain, "pretrain"),
    seed=snakemake.params.seed,
    tracking=section_from_dict(TrackingConfig, snakemake.config.get("tracking"), "tracking"),
    checkpoint_dir=snakemake.params.checkpoints,
    threads=snakemake.threads,
    snakemake_job=snakemake_job(snakemake),
    init_dir=snakemake.input.get("init") or None,
)
launch_pretrain(job, log_path=snakemake.log[0])
