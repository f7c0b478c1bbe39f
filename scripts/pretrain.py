"""Snakemake adapter: pretrain the model on the token shards (through torchrun when nproc or
nodes > 1)."""

from helox.common.config_files import section_from_dict
from helox.common.logs import setup_logging
from helox.model.config import ModelConfig
from helox.train.config import TrainingConfig
from helox.train.launch import launch_snakemake_job
from helox.train.pretrain import PretrainJob

setup_logging(snakemake.log[0])
launch_snakemake_job(
    snakemake,
    PretrainJob,
    manifest_path=snakemake.input.manifest,
    tokenizer_path=snakemake.input.tokenizer,
    model_config=section_from_dict(ModelConfig, snakemake.params.model, "model"),
    training_config=section_from_dict(TrainingConfig, snakemake.params.pretrain, "pretrain"),
    init_dir=snakemake.input.get("init") or None,
    weights=snakemake.params.weights or None,
)
