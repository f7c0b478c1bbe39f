"""Snakemake adapter: preference-tune the SFT model (DPO)."""

from helox.config import DPOConfig, TrackingConfig, section_from_dict
from helox.dpo import run_dpo
from helox.logs import setup_logging
from helox.train.lineage import snakemake_job

setup_logging(snakemake.log[0])
run_dpo(
    sft_dir=snakemake.input.sft,
    data_path=snakemake.input.data,
    output_dir=snakemake.output[0],
    config=section_from_dict(DPOConfig, snakemake.params.dpo, "dpo"),
    seed=snakemake.params.seed,
    tracking=section_from_dict(TrackingConfig, snakemake.config.get("tracking"), "tracking"),
    checkpoint_dir=snakemake.params.checkpoints,
    threads=snakemake.threads,
    snakemake_job=snakemake_job(snakemake),
)
