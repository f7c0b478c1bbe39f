"""Snakemake adapter: score one model folder, a stage's (its card numbers then go to the MLflow
run that wrote it) or an eval.baselines entry's (rule evaluate_baseline, wildcard `name`)."""

import os
from pathlib import Path

# Before torch starts: on CPU the job's threads, not every core (one thread generates a small
# model's tokens several times faster than two on a busy machine).
os.environ["OMP_NUM_THREADS"] = str(snakemake.threads)

from helox.common.config_files import section_from_dict
from helox.common.logs import setup_logging
from helox.eval.config import EvalConfig
from helox.eval.stage import run_evaluation
from helox.train.tracking import TrackingConfig

setup_logging(snakemake.log[0])
baseline = snakemake.wildcards.get("name")
# A baseline's scores go to no MLflow run: none wrote its model.
tracking = section_from_dict(TrackingConfig, snakemake.config.get("tracking"), "tracking")
run_evaluation(
    folder=snakemake.input.model,
    stage=baseline or snakemake.wildcards.stage,
    shards_dir=Path(snakemake.input.manifest).parent,
    task_paths={name: snakemake.input[f"task_{name}"] for name in snakemake.params.tasks},
    config=section_from_dict(EvalConfig, snakemake.params.eval, "eval"),
    seed=snakemake.params.seed,
    output_path=snakemake.output[0],
    seq_len=snakemake.params.seq_len,
    tracking=None if baseline else tracking,
    baseline=bool(baseline),
)
