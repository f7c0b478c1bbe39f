"""Snakemake adapter: score one imported baseline of eval.baselines on its held-out shards."""

import os
from pathlib import Path

# Before torch starts: on CPU the job's threads, not every core.
os.environ["OMP_NUM_THREADS"] = str(snakemake.threads)

from helox.common.config_files import section_from_dict
from helox.common.logs import setup_logging
from helox.eval.config import EvalConfig
from helox.eval.stage import run_evaluation

setup_logging(snakemake.log[0])
run_evaluation(
    folder=snakemake.input.model,
    stage=snakemake.wildcards.name,
    shards_dir=Path(snakemake.input.manifest).parent,
    task_paths={name: snakemake.input[f"task_{name}"] for name in snakemake.params.tasks},
    config=section_from_dict(EvalConfig, snakemake.params.eval, "eval"),
    seed=snakemake.params.seed,
    output_path=snakemake.output[0],
    seq_len=snakemake.params.seq_len,
    baseline=True,
)
