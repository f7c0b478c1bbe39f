"""Where a training run came from, as tracking tags: data and tokenizer hashes, code, job.

Every training run nests under a pipeline run named by `pipeline_key`: pretraining derives
the key from its run fingerprint and records it in its `metrics.json`, and SFT reads it
back from the pretrained folder, so a model and every fine-tune of it share one parent.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Any

import helox
from helox.common.config_files import section_from_dict
from helox.common.io import read_json
from helox.train.step_folders import step_dirs
from helox.train.tracking import FINAL_DIR_TAG, TrackingConfig

UNKNOWN = "unknown"


def git_commit(folder: str | Path = Path(helox.__file__).parent) -> tuple[str, bool]:
    """The commit checked out at `folder` (the helox source by default) and whether files
    differ from it; ("unknown", False) outside a git checkout or without git."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(folder), "diff", "--quiet", "HEAD", "--"],
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN, False
    return commit, dirty.returncode == 1


def pipeline_key(fingerprint: str) -> str:
    """The key of the pipeline run for a pretraining `fingerprint` in this working folder."""
    return hashlib.sha256(f"{Path.cwd().resolve()}\n{fingerprint}".encode()).hexdigest()


def snakemake_job(smk: Any) -> str:
    """`rule[wildcard=value,...]` of the `snakemake` object a `script:` adapter is given."""
    wildcards = ",".join(f"{name}={value}" for name, value in smk.wildcards.items())
    return f"{smk.rule}[{wildcards}]" if wildcards else smk.rule


def stage_job_arguments(smk: Any) -> dict[str, Any]:
    """What every training stage's run takes from its Snakemake job (the `snakemake` object
    of a `script:` adapter): seed, tracking, checkpoint folder, threads and the job's name."""
    return {
        "seed": smk.params.seed,
        "tracking": section_from_dict(TrackingConfig, smk.config.get("tracking"), "tracking"),
        "checkpoint_dir": smk.params.checkpoints,
        "threads": smk.threads,
        "snakemake_job": snakemake_job(smk),
    }


def lineage_tags(
    manifest_sha256: str | None, tokenizer_sha256: str, job: str | None
) -> dict[str, str]:
    """The tags that tie a training run to its data, tokenizer, code and Snakemake job."""
    commit, dirty = git_commit()
    return {
        "helox.manifest_sha256": manifest_sha256 or UNKNOWN,
        "helox.tokenizer_sha256": tokenizer_sha256,
        "helox.git_commit": commit,
        "helox.git_dirty": str(dirty).lower(),
        "helox.version": helox.__version__,
        "helox.snakemake_job": job or "none",
    }


def output_tags(output_dir: str | Path, checkpoint_dir: str | Path) -> dict[str, str]:
    """References to what a run wrote: its final folder and its step checkpoints."""
    checkpoints = [path for _, path in step_dirs(checkpoint_dir)]
    return {
        FINAL_DIR_TAG: str(Path(output_dir).resolve()),
        "helox.checkpoints": ",".join(str(path.resolve()) for path in checkpoints),
    }


def pretrained_lineage(folder: str | Path) -> dict[str, Any]:
    """The lineage recorded in a pretrained folder's `metrics.json`; {} where it has none."""
    metrics_path = Path(folder) / "metrics.json"
    if not metrics_path.is_file():
        return {}
    return read_json(metrics_path).get("lineage", {})


def tuned_lineage(base_dir: str | Path, tokenizer_sha256: str) -> dict[str, Any]:
    """The lineage of a run that tunes the model of `base_dir` with the tokenizer whose hash
    is `tokenizer_sha256`: the base folder's own, with this tokenizer's hash."""
    return {**pretrained_lineage(base_dir), "tokenizer_sha256": tokenizer_sha256}
