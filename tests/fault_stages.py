"""Every Helox stage as one workflow job on a tiny corpus, runnable in a process that kills itself.

The jobs use the workflow's layout and relative paths, run from a root folder as Snakemake
runs them from its working directory. As a script, it runs one job in a fresh process,
counting the profiler events of Helox's code, and SIGKILLs itself at the K-th event:
a moment anywhere in the job (between any two of its calls, writes and renames) that a
seed picks reproducibly:

    python fault_stages.py ROOT JOB K
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import helox
from helox.data.clean_config import CleanConfig
from helox.data.dedup import DedupConfig
from helox.model.config import ModelConfig
from helox.tokens.shards import ShardsConfig
from helox.tokens.tokenizer import TokenizerConfig
from helox.train.config import TrainingConfig
from helox.train.tracking import TrackingConfig
from helox.tune.config import SFTConfig

SEED = 1337
PARTS = 2
RAW = "results/sample/raw"
SFT_DATA = "results/sample/sft.jsonl"
CLEAN = CleanConfig(parts=PARTS)
TOKENIZER = TokenizerConfig(vocab_size=400, eval_docs=20)
SHARDS = ShardsConfig(parts=PARTS, train_split=0.8, val_split=0.1, test_split=0.1)
MODEL = ModelConfig(
    hidden_size=32, num_layers=1, num_attention_heads=2, max_position_embeddings=128
)
TRAINING = {"device": "cpu", "compile": False, "warmup_steps": 1, "eval_batches": 2}
PRETRAIN = TrainingConfig(
    seq_len=32, batch_size=4, total_steps=10, eval_steps=5, save_steps=2, log_steps=5, **TRAINING
)
SFT = SFTConfig(
    seq_len=128,
    batch_size=2,
    total_steps=6,
    val_fraction=0.2,
    eval_steps=3,
    save_steps=2,
    log_steps=3,
    **TRAINING,
)
NO_TRACKING = TrackingConfig(enabled=False)
HELOX_DIR = str(Path(helox.__file__).parent)


@dataclass(frozen=True)
class Job:
    """One workflow job: what it writes under its declared names, and how to run it."""

    name: str
    module: str  # imported before the profiler starts, so that import is not the job
    outputs: tuple[str, ...]
    run: Callable[[], object]
    checkpoints: str | None = None  # a training job's step checkpoints, which a rerun resumes


def _sample_corpus() -> None:
    from helox.data.stdlib import gather_stdlib

    gather_stdlib(RAW, 250_000)


def _sample_instructions() -> None:
    from helox.data.stdlib import derive_sft_pairs

    derive_sft_pairs(SFT_DATA, max_pairs=40, max_response_chars=600, seed=SEED, root=Path(RAW))


def _clean(part: int) -> Callable[[], object]:
    def run() -> None:
        from helox.data.clean import clean_part

        kept, rejected, stats = _clean_outputs(part)
        clean_part(RAW, part, PARTS, CLEAN, kept, rejected, stats)

    return run


def _clean_outputs(part: int) -> tuple[str, str, str]:
    return (
        f"results/clean/part-{part}.jsonl.zst",
        f"results/clean/rejected/part-{part}.jsonl.zst",
        f"results/clean/part-{part}.stats.json",
    )


def _signatures(part: int) -> Callable[[], object]:
    def run() -> None:
        from helox.data.dedup_index import IndexSettings, sign_part

        sign_part(
            f"results/clean/part-{part}.jsonl.zst",
            _signature_path(part),
            IndexSettings.of(DedupConfig()),
        )

    return run


def _signature_path(part: int) -> str:
    return f"results/dedup/signatures/part-{part}"


def _pairs_path(bucket: int) -> str:
    return f"results/dedup/pairs/bucket-{bucket}.npz"


def _buckets(bucket: int) -> Callable[[], object]:
    def run() -> None:
        from helox.data.dedup_pairs import find_pairs

        config = DedupConfig()
        signatures = [_signature_path(part) for part in range(PARTS)]
        find_pairs(signatures, bucket, config.bucket_jobs, _pairs_path(bucket), config)

    return run


def _removed_path(part: int) -> str:
    return f"results/dedup/removed/part-{part}.npz"


def _clusters() -> None:
    from helox.data.dedup_join import join_pairs

    join_pairs(
        [_signature_path(part) for part in range(PARTS)],
        [_pairs_path(bucket) for bucket in range(DedupConfig().bucket_jobs)],
        [_removed_path(part) for part in range(PARTS)],
        "results/dedup/stats.json",
        clean_stats=[_clean_outputs(part)[2] for part in range(PARTS)],
    )


def _dedup(part: int) -> Callable[[], object]:
    def run() -> None:
        from helox.data.dedup import filter_part

        filter_part(f"results/clean/part-{part}.jsonl.zst", _removed_path(part), _dedup_path(part))

    return run


def _dedup_path(part: int) -> str:
    return f"results/dedup/part-{part}.jsonl.zst"


def _tokenizer() -> None:
    from helox.tokens.tokenizer import build_tokenizer

    build_tokenizer(
        [_dedup_path(part) for part in range(PARTS)], "results/tokenizer", TOKENIZER, threads=1
    )


def _shard_outputs(part: int):
    from helox.data.corpus import DEFAULT_SOURCE
    from helox.tokens.shards import PartPaths

    return PartPaths.of("results/shards", part, [DEFAULT_SOURCE])


def _shard_files(part: int) -> tuple[str, ...]:
    outputs = _shard_outputs(part)
    return (*(str(p) for paths in outputs.shards().values() for p in paths), str(outputs.stats))


def _shards(part: int) -> Callable[[], object]:
    def run() -> None:
        from helox.tokens.shards import inputs_of_part, tokenize_part

        inputs = inputs_of_part([_dedup_path(p) for p in range(PARTS)], part, SHARDS.parts)
        tokenize_part(inputs, "results/tokenizer/spm.model", _shard_outputs(part), SHARDS, SEED)

    return run


def _manifest() -> None:
    from helox.tokens.shards import SPLITS, write_manifest

    parts = [_shard_outputs(part) for part in range(SHARDS.parts)]
    write_manifest(
        "results/shards",
        [outputs.stats for outputs in parts],
        {
            split: [path for outputs in parts for path in outputs.shards()[split]]
            for split in SPLITS
        },
        "results/tokenizer/spm.model",
        "results/shards/manifest.json",
    )


def _pretrain() -> None:
    from helox.train.pretrain import run_pretrain

    run_pretrain(
        "results/shards/manifest.json",
        "results/tokenizer/spm.model",
        "results/pretrain/final",
        MODEL,
        PRETRAIN,
        seed=SEED,
        tracking=NO_TRACKING,
        checkpoint_dir="results/pretrain/checkpoints",
        threads=1,
    )


def _sft() -> None:
    from helox.tune.sft import run_sft

    run_sft(
        pretrained_dir="results/pretrain/final",
        data_path=SFT_DATA,
        output_dir="results/sft/final",
        config=SFT,
        seed=SEED,
        tracking=NO_TRACKING,
        checkpoint_dir="results/sft/checkpoints",
        threads=1,
    )


def _jobs() -> list[Job]:
    jobs = [
        Job("sample_corpus", "helox.data.stdlib", (RAW,), _sample_corpus),
        Job("sample_instructions", "helox.data.stdlib", (SFT_DATA,), _sample_instructions),
    ]
    jobs += [
        Job(f"clean_{part}", "helox.data.clean", _clean_outputs(part), _clean(part))
        for part in range(PARTS)
    ]
    jobs += [
        Job(
            f"dedup_signatures_{part}",
            "helox.data.dedup_index",
            (_signature_path(part),),
            _signatures(part),
        )
        for part in range(PARTS)
    ]
    jobs += [
        Job(
            f"dedup_buckets_{bucket}",
            "helox.data.dedup_pairs",
            (_pairs_path(bucket),),
            _buckets(bucket),
        )
        for bucket in range(DedupConfig().bucket_jobs)
    ]
    outputs = (*map(_removed_path, range(PARTS)), "results/dedup/stats.json")
    jobs.append(Job("dedup_clusters", "helox.data.dedup_join", outputs, _clusters))
    jobs += [
        Job(f"dedup_{part}", "helox.data.dedup", (_dedup_path(part),), _dedup(part))
        for part in range(PARTS)
    ]
    outputs = tuple(f"results/tokenizer/{name}" for name in ("spm.model", "spm.vocab", "eval.json"))
    jobs.append(Job("tokenizer", "helox.tokens.tokenizer", outputs, _tokenizer))
    jobs += [
        Job(
            f"shards_{part}",
            "helox.tokens.shards",
            _shard_files(part),
            _shards(part),
        )
        for part in range(SHARDS.parts)
    ]
    jobs.append(
        Job("manifest", "helox.tokens.shards", ("results/shards/manifest.json",), _manifest)
    )
    for stage, module, run in (
        ("pretrain", "helox.train.pretrain", _pretrain),
        ("sft", "helox.tune.sft", _sft),
    ):
        outputs = (f"results/{stage}/final",)
        jobs.append(Job(stage, module, outputs, run, f"results/{stage}/checkpoints"))
    return jobs


JOBS: dict[str, Job] = {job.name: job for job in _jobs()}


class EventCounter:
    """A profiler that counts the events of Helox's own code (its calls and returns, and the
    library calls it makes) in every thread, and SIGKILLs the process at event `kill_at`.

    Imports that a job makes on first use (pyarrow loads pandas, say) are not counted, so
    the count is the same in a fresh process and in one that ran other jobs before.
    """

    def __init__(self, kill_at: int | None = None):
        self.count = 0
        self.kill_at = kill_at

    def __call__(self, frame, event, arg) -> None:
        if frame.f_code.co_filename.startswith(HELOX_DIR):
            self.count += 1
            if self.count == self.kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    def __enter__(self) -> EventCounter:
        threading.setprofile(self)
        sys.setprofile(self)
        return self

    def __exit__(self, *exc) -> None:
        sys.setprofile(None)
        threading.setprofile(None)


def run_counted(job: Job, kill_at: int | None = None) -> int:
    """Run `job` here, from the current folder; return its count of events."""
    importlib.import_module(job.module)
    with EventCounter(kill_at) as counter:
        job.run()
    return counter.count


def main() -> None:
    """Run one job from ROOT in this process, SIGKILLing it at event K."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("root", type=Path)
    parser.add_argument("job", choices=sorted(JOBS))
    parser.add_argument("kill_at", type=int, metavar="K")
    args = parser.parse_args()
    os.chdir(args.root)
    run_counted(JOBS[args.job], args.kill_at)


if __name__ == "__main__":
    main()
