"""Two processes through torchrun on CPU (gloo), DDP then FSDP2, against one process, for
pretraining and SFT."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import torch
from process_runs import (
    MODEL_WITHOUT_DROPOUT,
    NO_TRACKING,
    assert_follows,
    assert_same_losses,
    in_one_process,
    one_process_pretraining,
    pretrain_job,
    resumed_step,
    short_pretraining,
)
from safetensors import safe_open
from tiny_models import seeded_model, tiny_config

from helox.common.io import JsonlWriter, read_json
from helox.model.folder import load_final, save_final
from helox.model.network import create_model_from_config
from helox.tokens.chat import HeloxChat
from helox.tokens.vocab import load_tokenizer
from helox.train.checkpoint import MODEL_FILE, SHARDS_DIR, checkpoint_problem, load_checkpoint
from helox.train.config import TrainingConfig
from helox.train.launch import torchrun_command
from helox.train.pretrain import launch_pretrain
from helox.train.step_folders import step_dirs
from helox.tune.config import DPOConfig, SFTConfig
from helox.tune.dpo import DPOJob, launch_dpo, run_dpo
from helox.tune.sft import SFTJob, launch_sft
from helox.tune.sft_data import SFTBatches, encode_examples, read_instruction_data

NPROC = 2
STEPS = 40
TUNING_RUN = {"seed": 3, "tracking": NO_TRACKING}

Tuning = TypeVar("Tuning", bound=TrainingConfig)


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, read from /proc (torchrun starts workers in new sessions)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, frontier = [], [pid]
    while frontier:
        below = children.get(frontier.pop(), [])
        found += below
        frontier += below
    return found


def kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL `process` and everything it started, as a lost machine would."""
    for pid in [process.pid, *descendants(process.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait()


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, f"exited with {process.returncode} before {path} appeared"
        assert time.monotonic() < deadline, f"{path} did not appear in {timeout} s"
        time.sleep(0.01)


def as_if_killed_after(output: Path, step: int) -> None:
    """As if the run writing `output` was killed after `step`: its final folder and every later
    checkpoint are gone."""
    shutil.rmtree(output)
    for later, path in step_dirs(output.parent / "checkpoints"):
        if later > step:
            shutil.rmtree(path)


def test_ddp_killed_then_resumed_under_fsdp_follows_the_single_process_loss_curve(
    manifest: Path, spm_model: Path, tmp_path: Path
) -> None:
    """Each rank reads its half of every global batch; a SIGKILL mid-run under DDP, then a
    rerun with `fsdp: true`, resumes from the newest checkpoint and still matches one process."""
    per_rank = short_pretraining(STEPS, eval_batches=10, save_steps=5, log_steps=10, nproc=NPROC)
    single = one_process_pretraining(manifest, spm_model, tmp_path / "single" / "final", per_rank)

    output = tmp_path / "ddp" / "final"
    job = pretrain_job(manifest, spm_model, output, per_rank, threads=NPROC)
    command = torchrun_command(NPROC, "helox.train.pretrain", [job.to_json()])
    killed = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    wait_for(output.parent / "checkpoints" / "step_5" / "COMPLETE", killed)
    kill_tree(killed)
    assert killed.returncode == -signal.SIGKILL
    assert not output.exists()

    log_path = tmp_path / "ddp.log"
    sharded = dataclasses.replace(job, training_config=dataclasses.replace(per_rank, fsdp=True))
    resumed = launch_pretrain(sharded, log_path=log_path)
    log = log_path.read_text()
    assert 5 <= resumed_step(log) < STEPS and "world_size': 2" in log
    assert read_json(output / "metrics.json") == resumed
    assert_follows(resumed, single, STEPS)


def test_a_run_resumes_on_fewer_processes_that_keep_its_batches(
    manifest: Path, spm_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two FSDP processes, one micro-batch each, stop at step 6; one process accumulating two
    micro-batches resumes their sharded checkpoint and ends with the two-process losses."""
    two = short_pretraining(12, save_steps=6, log_steps=4, nproc=NPROC, fsdp=True)
    output = tmp_path / "run" / "final"
    job = pretrain_job(manifest, spm_model, output, two, threads=NPROC)
    whole = launch_pretrain(job)

    as_if_killed_after(output, 6)
    one = dataclasses.replace(two, nproc=1, gradient_accumulation_steps=NPROC, fsdp=False)
    with caplog.at_level(logging.INFO, logger="helox.train.loop"):
        resumed = launch_pretrain(dataclasses.replace(job, training_config=one, threads=1))
    assert resumed_step(caplog.text) == 6
    assert_same_losses(resumed, whole)
    assert resumed["train_tokens_seen"] == whole["train_tokens_seen"]


# ---------------------------------------------------------------------------- SFT


def tiny_model_folder(folder: Path, spm_model: Path, stage: str, positions: int) -> Path:
    """A seeded 2 × 32 model saved as `stage`'s final folder, for a fine-tuning stage."""
    config = tiny_config(400, positions, hidden_size=32, num_attention_heads=2)
    save_final(folder, seeded_model(config), config, spm_model, {"stage": stage})
    return folder


def fine_tuning(config_class: type[Tuning], steps: int, **changes: Any) -> Tuning:
    """`config_class` for NPROC processes on the CPU, with `changes` on top: `steps` steps
    after two of warm-up, evaluated, logged and saved at the last (every checkpoint kept), a
    quarter of the data held out."""
    cpu = {"learning_rate": 3e-3, "warmup_steps": 2, "device": "cpu", "compile": False}
    steps_of = ("total_steps", "eval_steps", "log_steps", "save_steps", "save_total_limit")
    fields = {**cpu, **dict.fromkeys(steps_of, steps), "val_fraction": 0.25, **changes}
    return config_class(nproc=NPROC, **fields)


def write_sums(
    path: Path, record: Callable[[int, int], dict], count: int, step: int, modulus: int
) -> Path:
    """A JSONL file of `record(a, b)` for each a below `count`, b being step·a mod `modulus`."""
    with JsonlWriter(path) as writer:
        for a in range(count):
            writer.write(record(a, (step * a) % modulus))
    return path


def sum_instruction(a: int, b: int) -> dict[str, str]:
    """The question "What is a plus b?" and its answer, both of lengths that vary with a."""
    question = f"What is {a} plus {b}?" + " Show the sum." * (a % 4)
    answer = f"{a} + {b} = {a + b}" + f", so the sum is {a + b}." * (a % 3)
    return {"instruction": question, "response": answer}


@pytest.fixture
def instruction_pairs(tmp_path: Path) -> Path:
    """Arithmetic questions and answers of varied lengths, as SFT's JSONL."""
    return write_sums(tmp_path / "pairs.jsonl", sum_instruction, 60, 7, 23)


def test_each_rank_takes_its_own_rows_of_every_global_sft_batch(
    instruction_pairs: Path, spm_model: Path
) -> None:
    items = read_instruction_data(instruction_pairs).items
    tokenizer = load_tokenizer(spm_model)
    examples = encode_examples(items, HeloxChat(tokenizer), 96)
    single = SFTBatches(examples, 2 * 3, seed=4, pack_width=96, pad_id=tokenizer.pad)
    ranks = [
        SFTBatches(examples, 3, seed=4, pack_width=96, rank=r, world_size=2, pad_id=tokenizer.pad)
        for r in (0, 1)
    ]
    for _ in range(12):  # over an epoch boundary
        whole_ids, whole_labels, whole_extra = next(single)
        parts = [next(batches) for batches in ranks]
        assert torch.equal(torch.cat([p[0] for p in parts]), whole_ids)
        assert torch.equal(torch.cat([p[1] for p in parts]), whole_labels)
        for key, value in whole_extra.items():
            assert torch.equal(torch.cat([p[2][key] for p in parts]), value), key
    assert ranks[0].state() == ranks[1].state() == single.state()


def test_sft_in_two_processes_resumes_exactly_under_fsdp(
    instruction_pairs: Path, spm_model: Path, tmp_path: Path
) -> None:
    """SFT under torchrun (DDP); a rerun from an earlier checkpoint, with `fsdp: true`, ends
    with the losses and weights of the uninterrupted run."""
    pretrained = tiny_model_folder(tmp_path / "pretrained", spm_model, "pretrain", 96)
    config = fine_tuning(
        SFTConfig, 8, seq_len=96, batch_size=2, eval_batches=2, save_steps=2, val_fraction=0.2
    )
    output = tmp_path / "sft" / "final"
    job = SFTJob(
        str(pretrained), str(instruction_pairs), str(output), config, threads=NPROC, **TUNING_RUN
    )
    whole = launch_sft(job)
    whole_model, _ = load_final(output)

    as_if_killed_after(output, 4)
    log_path = tmp_path / "sft.log"
    resumed = launch_sft(
        dataclasses.replace(job, config=dataclasses.replace(config, fsdp=True)), log_path
    )
    log = log_path.read_text()
    assert resumed_step(log) == 4 and "'world_size': 2" in log

    assert [step for step, _ in resumed["loss_history"]] == list(range(1, 9))
    assert_same_losses(resumed, whole)
    assert resumed["val_loss"] == pytest.approx(whole["val_loss"], rel=1e-5)
    resumed_model, _ = load_final(output)
    for (name, ours), theirs in zip(
        resumed_model.state_dict().items(), whole_model.state_dict().values(), strict=True
    ):
        assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-6), name


# ---------------------------------------------------------------------------- DPO


def sum_preference(a: int, b: int) -> dict[str, str]:
    """The question "What is a plus b?" with the right sum chosen over a wrong one."""
    return {
        "prompt": f"What is {a} plus {b}?" + " Explain." * (a % 3),
        "chosen": f"{a} + {b} = {a + b}" + ", the sum." * (a % 2),
        "rejected": f"{a} + {b} = {a + b + 1 + a % 4}",
    }


@pytest.fixture
def preference_pairs(tmp_path: Path) -> Path:
    """Arithmetic questions with the right sum chosen over a wrong one, as DPO's JSONL."""
    return write_sums(tmp_path / "preferences.jsonl", sum_preference, 48, 5, 17)


@pytest.mark.parametrize("fsdp", [False, True], ids=["ddp", "fsdp"])
def test_dpo_in_two_processes_follows_one_process(
    preference_pairs: Path, spm_model: Path, tmp_path: Path, fsdp: bool
) -> None:
    """Each process scores its share of the reference log-probabilities and trains on its
    pairs of every global batch; losses and held-out metrics are one process's."""
    sft = tiny_model_folder(tmp_path / "sft", spm_model, "sft", 64)
    per_rank = fine_tuning(
        DPOConfig, 6, seq_len=64, batch_size=3, eval_batches=4, log_steps=3, fsdp=fsdp
    )
    one = in_one_process(per_rank)
    single = run_dpo(
        sft, preference_pairs, tmp_path / "one" / "final", one, threads=1, **TUNING_RUN
    )
    two = str(tmp_path / "two" / "final")
    job = DPOJob(str(sft), str(preference_pairs), two, per_rank, threads=NPROC, **TUNING_RUN)
    log_path = tmp_path / "dpo.log"
    shared = launch_dpo(job, log_path)
    assert "'world_size': 2" in log_path.read_text()
    assert_same_losses(shared, single)
    assert shared["loss_history"][0][1] == pytest.approx(math.log(2), rel=1e-5)
    for key in ("val_loss", "val_reward_accuracy", "base_val_reward_accuracy"):
        assert shared[key] == pytest.approx(single[key], rel=1e-5), key


# ---------------------------------------------------------------------------- sharded checkpoints


def test_fsdp_checkpoints_are_sharded_verified_resumable_and_load_in_one_process(
    manifest: Path, spm_model: Path, tmp_path: Path
) -> None:
    """Under FSDP each process writes its own shards (no process holds the whole state); the
    checkpoint is sealed with every shard's digest, resumes exactly, and loads in one process
    into the weights that `final/` holds."""
    config = short_pretraining(
        12, eval_batches=5, save_steps=4, save_total_limit=3, log_steps=12, nproc=NPROC, fsdp=True
    )
    output = tmp_path / "fsdp" / "final"
    job = pretrain_job(manifest, spm_model, output, config, threads=NPROC)
    whole = launch_pretrain(job)
    checkpoints = output.parent / "checkpoints"
    assert [step for step, _ in step_dirs(checkpoints)] == [4, 8, 12]

    last = checkpoints / "step_12"
    shards = sorted((last / SHARDS_DIR).iterdir())
    assert len(shards) == NPROC and not (last / MODEL_FILE).exists()
    stored = []
    for shard in shards:
        with safe_open(shard, framework="pt") as handle:
            stored.append(
                sum(
                    math.prod(handle.get_slice(key).get_shape())
                    for key in handle.keys()  # noqa: SIM118 (safe_open is no dict)
                    if key.startswith("model.")
                )
            )
    one_process = create_model_from_config(MODEL_WITHOUT_DROPOUT)
    parameters = sum(p.numel() for p in one_process.parameters())
    assert sum(stored) == parameters and max(stored) < parameters, stored
    assert checkpoint_problem(last) is None

    load_checkpoint(last, one_process)
    final_model, _ = load_final(output)
    for (name, ours), theirs in zip(
        one_process.state_dict().items(), final_model.state_dict().values(), strict=True
    ):
        assert torch.equal(ours, theirs), name

    # A rerun resumes from the shards of step 8 and ends where the run ended.
    as_if_killed_after(output, 8)
    log_path = tmp_path / "fsdp.log"
    resumed = launch_pretrain(job, log_path=log_path)
    assert resumed_step(log_path.read_text()) == 8
    assert resumed["loss_history"] == whole["loss_history"]
    assert resumed["val_loss"] == whole["val_loss"]

    shard = next((checkpoints / "step_4" / SHARDS_DIR).iterdir())
    damaged = bytearray(shard.read_bytes())
    damaged[-1] ^= 0xFF
    shard.write_bytes(bytes(damaged))
    problem = checkpoint_problem(checkpoints / "step_4")
    assert problem == (
        f"{SHARDS_DIR}/{shard.name} does not match the SHA-256 recorded when it was saved"
    )


def test_muon_under_fsdp_follows_one_process_and_resumes_its_momentum(
    manifest: Path, spm_model: Path, tmp_path: Path
) -> None:
    """Muon's row-sharded orthogonalisation gives one process's losses; a rerun from the
    middle checkpoint restores the sharded momentum and ends with the same losses. (Under DDP
    `orthogonalise_shared` does the work; tests/test_train.py runs it in two processes.)"""
    per_rank = short_pretraining(
        12,
        gradient_accumulation_steps=2,
        optimizer="muon",
        save_steps=6,
        log_steps=4,
        nproc=NPROC,
        fsdp=True,
    )
    single = one_process_pretraining(manifest, spm_model, tmp_path / "single" / "final", per_rank)
    output = tmp_path / "two" / "final"
    job = pretrain_job(manifest, spm_model, output, per_rank, threads=NPROC)
    whole = launch_pretrain(job)
    assert_same_losses(whole, single, rel=1e-4)

    as_if_killed_after(output, 6)
    log_path = tmp_path / "resumed.log"
    resumed = launch_pretrain(job, log_path=log_path)
    assert resumed_step(log_path.read_text()) == 6
    assert resumed["loss_history"] == whole["loss_history"]
