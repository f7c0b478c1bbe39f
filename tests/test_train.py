"""Training: schedules, checkpoints, exact resume, bad steps, metrics, pretraining end to end."""

from __future__ import annotations

import dataclasses
import logging
import math
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_loader import EOS, write_shards
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import Shard, distribute_tensor

from helox.common.io import read_json
from helox.model.config import ModelConfig
from helox.model.device import DeviceManager
from helox.model.folder import load_final, save_final
from helox.model.network import create_model_from_config
from helox.pipeline.config import config_errors
from helox.tokens.loader import PackedBatches, TokenStream, eval_batches
from helox.tokens.vocab import SPECIAL_IDS, load_tokenizer
from helox.train.checkpoint import (
    ConfigMismatchError,
    check_model_config,
    latest_checkpoint,
    load_checkpoint,
    run_defining,
    run_fingerprint,
)
from helox.train.config import TrainingConfig
from helox.train.loop import NonFiniteTrainingError, Trainer, seed_everything
from helox.train.metrics import peak_flops, token_byte_lengths
from helox.train.objective import z_loss
from helox.train.optim import (
    Muon,
    build_optimizer,
    orthogonalise,
    orthogonalise_sharded,
    orthogonalise_shared,
)
from helox.train.pretrain import run_pretrain
from helox.train.schedule import WarmupCosine, WarmupStableDecay, make_schedule
from helox.train.step_folders import step_dirs
from helox.train.tracking import Tracker, TrackingConfig, tracking_uri

MODEL = ModelConfig(
    vocab_size=16,
    hidden_size=32,
    num_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=32,
    dropout=0.1,
)
TRAINING = TrainingConfig(
    seq_len=16,
    batch_size=4,
    gradient_accumulation_steps=2,
    learning_rate=1e-2,
    total_steps=8,
    warmup_steps=2,
    eval_steps=4,
    eval_batches=2,
    save_steps=4,
    save_total_limit=3,
    log_steps=1,
    device="cpu",
)


pytestmark = pytest.mark.usefixtures("one_thread")


def patterned_documents(count: int, seed: int) -> list[list[int]]:
    """Runs of 4, 5, ..., 13 from random starting points: easy to learn, flat unigram."""
    rng = np.random.default_rng(seed)
    documents = []
    for _ in range(count):
        start, length = rng.integers(0, 10), rng.integers(20, 60)
        documents.append([4 + (start + i) % 10 for i in range(length)] + [EOS])
    return documents


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    splits = {"train": patterned_documents(60, 0), "val": patterned_documents(10, 1)}
    return write_shards(tmp_path / "shards", splits, files_per_split=2, vocab_size=16)


class Crash(Exception):
    """Stands in for the process being killed."""


def crash_after(step: int):
    def hook(trainer: Trainer, result) -> None:
        if result.step == step:
            raise Crash

    return hook


def run_training(
    manifest: Path,
    checkpoint_dir: Path,
    config: TrainingConfig = TRAINING,
    fingerprint: str = "run-a",
    hooks=(),
    train_batches=None,
    model_config: ModelConfig = MODEL,
    token_bytes: torch.Tensor | None = None,
) -> tuple[dict, torch.nn.Module]:
    seed_everything(0)
    model = create_model_from_config(model_config)
    batches = train_batches or PackedBatches(
        TokenStream(manifest, "train"), config.seq_len, config.batch_size, seed=0
    )
    val = TokenStream(manifest, "val")
    metrics = Trainer(
        model,
        batches,
        lambda: eval_batches(val, config.seq_len, config.batch_size),
        config,
        DeviceManager("cpu", threads=1),
        checkpoint_dir,
        fingerprint,
        hooks=hooks,
        token_bytes=token_bytes,
    ).fit()
    return metrics, model


# ---------------------------------------------------------------------------- schedules


def test_cosine_schedule_warms_up_linearly_then_decays_to_the_floor() -> None:
    schedule = WarmupCosine(learning_rate=1.0, warmup_steps=4, total_steps=14, min_lr_ratio=0.1)
    assert [schedule(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert schedule(4) == 1.0
    assert schedule(9) == pytest.approx(0.1 + 0.9 * 0.5)
    assert schedule(14) == pytest.approx(0.1)
    assert schedule(100) == pytest.approx(0.1)
    values = [schedule(s) for s in range(4, 15)]
    assert values == sorted(values, reverse=True)
    assert WarmupCosine(2.0, 0, 10, 0.0)(0) == 2.0


def test_wsd_schedule_holds_the_peak_then_decays_linearly_over_the_last_fraction() -> None:
    schedule = WarmupStableDecay(
        learning_rate=2.0, warmup_steps=2, total_steps=20, min_lr_ratio=0.1, decay_fraction=0.25
    )
    assert [schedule(s) for s in range(2)] == [1.0, 2.0]
    assert all(schedule(s) == 2.0 for s in range(2, 15))
    decay = [schedule(s) for s in range(15, 21)]
    assert decay == pytest.approx([2.0 - 1.8 * i / 5 for i in range(6)])
    assert schedule(40) == pytest.approx(0.2)


def test_the_config_picks_the_schedule() -> None:
    assert isinstance(make_schedule(TRAINING), WarmupCosine)
    wsd = make_schedule(dataclasses.replace(TRAINING, lr_schedule="wsd", decay_fraction=0.5))
    assert isinstance(wsd, WarmupStableDecay) and wsd.decay_fraction == 0.5
    errors = config_errors({"pretrain": {"lr_schedule": "linear", "decay_fraction": 0}})
    assert any("pretrain.lr_schedule" in e and "'wsd'" in e for e in errors)
    assert any("pretrain.decay_fraction" in e for e in errors)
    assert not config_errors({"sft": {"nproc": 2, "nodes": 2, "fsdp": True}})
    assert not config_errors({"dpo": {"nproc": 2, "nodes": 2, "fsdp": True}})
    assert any("pretrain.nodes" in e for e in config_errors({"pretrain": {"nodes": 0}}))
    assert not config_errors({"pretrain": {"nproc": 4, "fsdp": True, "max_consecutive_skips": 3}})


# ---------------------------------------------------------------------------- checkpoints


def test_checkpoint_folders_hold_the_documented_files(manifest: Path, tmp_path: Path) -> None:
    run_training(manifest, tmp_path / "ckpt")
    steps = [step for step, _ in step_dirs(tmp_path / "ckpt")]
    assert steps == [4, 8]
    latest = latest_checkpoint(tmp_path / "ckpt")
    assert latest == tmp_path / "ckpt" / "step_8"
    names = {p.name for p in latest.iterdir()}
    assert names == {
        "model.safetensors",
        "optimizer.safetensors",
        "rng.safetensors",
        "state.json",
        "config.json",
        "COMPLETE",
    }
    moments = load_file(latest / "optimizer.safetensors")
    assert moments["model.norm.weight.exp_avg"].shape == (32,)
    assert moments["model.embed_tokens.weight.step"].item() == 8
    assert not any(name.startswith("lm_head") for name in moments)
    complete = read_json(latest / "COMPLETE")
    assert set(complete["files"]) == names - {"COMPLETE"}
    assert all(len(entry["sha256"]) == 64 for entry in complete["files"].values())
    state = read_json(latest / "state.json")
    assert state["step"] == 8 and state["loader"] == {"epoch": 0, "index": 8 * 2 * 4}
    assert set(state["rng"]) == {"python", "numpy"}
    config = read_json(latest / "config.json")
    assert config["fingerprint"] == "run-a" and config["model"]["hidden_size"] == 32
    assert not list((tmp_path / "ckpt").glob(".*"))


def test_broken_checkpoints_are_skipped_with_a_warning(
    manifest: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ckpt = tmp_path / "ckpt"
    run_training(manifest, ckpt, dataclasses.replace(TRAINING, save_steps=2, save_total_limit=4))
    (ckpt / "step_8" / "COMPLETE").unlink()
    with caplog.at_level(logging.WARNING):
        assert latest_checkpoint(ckpt) == ckpt / "step_6"
    assert "step_8" in caplog.text and "no COMPLETE marker" in caplog.text

    moments = ckpt / "step_6" / "optimizer.safetensors"
    data = bytearray(moments.read_bytes())
    data[-5] ^= 0x01
    moments.write_bytes(bytes(data))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert latest_checkpoint(ckpt) == ckpt / "step_4"
    assert "optimizer.safetensors does not match the SHA-256" in caplog.text

    model_file = ckpt / "step_4" / "model.safetensors"
    model_file.write_bytes(model_file.read_bytes()[:100])
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert latest_checkpoint(ckpt) == ckpt / "step_2"
    assert "model.safetensors has 100 bytes" in caplog.text


def test_save_total_limit_keeps_the_newest(manifest: Path, tmp_path: Path) -> None:
    config = dataclasses.replace(TRAINING, save_steps=2, save_total_limit=2)
    run_training(manifest, tmp_path / "ckpt", config)
    assert [step for step, _ in step_dirs(tmp_path / "ckpt")] == [6, 8]


def test_loading_into_a_different_model_names_the_keys(manifest: Path, tmp_path: Path) -> None:
    run_training(manifest, tmp_path / "ckpt")
    other = create_model_from_config(dataclasses.replace(MODEL, hidden_size=64, num_layers=3))
    with pytest.raises(
        ConfigMismatchError, match="hidden_size: checkpoint 32 vs current 64"
    ) as err:
        load_checkpoint(tmp_path / "ckpt" / "step_8", other)
    assert "num_layers" in str(err.value) and "vocab_size" not in str(err.value)


def test_resuming_with_a_different_model_is_refused_and_keeps_the_checkpoints(
    manifest: Path, tmp_path: Path
) -> None:
    ckpt = tmp_path / "ckpt"
    run_training(manifest, ckpt)
    wider = dataclasses.replace(MODEL, num_key_value_heads=4)
    with pytest.raises(
        ConfigMismatchError, match="num_key_value_heads: checkpoint 2 vs current 4"
    ) as err:
        run_training(manifest, ckpt, fingerprint="run-b", model_config=wider)
    assert f"delete {ckpt}" in str(err.value)
    assert [step for step, _ in step_dirs(ckpt)] == [4, 8]


def test_only_knobs_that_change_the_arithmetic_change_the_fingerprint() -> None:
    def fingerprint(**changes) -> str:
        return run_fingerprint(training=run_defining(dataclasses.replace(TRAINING, **changes)))

    base = fingerprint()  # 1 process × 2 micro-batches a step
    for cadence in ({"log_steps": 7}, {"save_steps": 3}, {"fsdp": True}, {"compile": True}):
        assert fingerprint(**cadence) == base, cadence
    for same_batches in (
        {"nproc": 2, "gradient_accumulation_steps": 1},
        {"nodes": 2, "gradient_accumulation_steps": 1},
    ):
        assert fingerprint(**same_batches) == base, same_batches
    for decisive in (
        {"learning_rate": 1e-3},
        {"batch_size": 8},
        {"nproc": 2},
        {"gradient_accumulation_steps": 4},
        {"lr_schedule": "wsd"},
    ):
        assert fingerprint(**decisive) != base, decisive


# ---------------------------------------------------------------------------- the loop


def test_resumed_run_is_bitwise_identical_to_an_uninterrupted_one(
    manifest: Path, tmp_path: Path
) -> None:
    whole, whole_model = run_training(manifest, tmp_path / "whole")

    with pytest.raises(Crash):
        run_training(manifest, tmp_path / "crashed", hooks=[crash_after(6)])
    assert [step for step, _ in step_dirs(tmp_path / "crashed")] == [4]
    resumed, resumed_model = run_training(manifest, tmp_path / "crashed")

    assert len(whole["loss_history"]) == 8
    assert resumed["loss_history"] == whole["loss_history"]
    assert resumed["val_loss"] == whole["val_loss"]
    assert resumed["train_tokens_seen"] == whole["train_tokens_seen"] == 8 * 2 * 4 * 16
    for a, b in zip(whole_model.parameters(), resumed_model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_training_reduces_the_loss_and_logs_throughput_and_mfu(
    manifest: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = dataclasses.replace(
        TRAINING, total_steps=30, eval_steps=30, save_steps=30, log_steps=10, lr_schedule="wsd"
    )
    with caplog.at_level(logging.INFO, logger="helox.train.loop"):
        metrics, _ = run_training(manifest, tmp_path / "ckpt", config)
    losses = [loss for _, loss in metrics["loss_history"]]
    assert losses[0] > 2.5
    assert np.mean(losses[-5:]) < 0.6 * losses[0]
    assert metrics["steps"] == 30 and metrics["skipped_steps"] == 0
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step 10/30")]
    assert len(lines) == 1
    for field in ("loss ", "tok/s ", "mfu ", "eta 0:00:"):
        assert field in lines[0]
    assert lines[0].split("mfu ")[1].split("%")[0].replace(".", "").isdigit()


def test_a_different_fingerprint_starts_fresh_and_drops_stale_checkpoints(
    manifest: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ckpt = tmp_path / "ckpt"
    first, _ = run_training(manifest, ckpt, fingerprint="run-a")
    with caplog.at_level(logging.WARNING):
        second, _ = run_training(manifest, ckpt, fingerprint="run-b")
    assert "belong to a different run" in caplog.text
    assert second["loss_history"] == first["loss_history"]
    for _, path in step_dirs(ckpt):
        assert read_json(path / "config.json")["fingerprint"] == "run-b"


def test_checkpoints_of_another_split_of_the_batch_are_refused_not_deleted(
    manifest: Path, tmp_path: Path
) -> None:
    """A rerun taking other micro-batches a step (as after losing a node) must not delete the
    run's checkpoints; the message says what keeps the product."""
    ckpt = tmp_path / "ckpt"
    run_training(manifest, ckpt)  # 1 process × 2 micro-batches a step
    halved = dataclasses.replace(TRAINING, gradient_accumulation_steps=1)
    with pytest.raises(ConfigMismatchError) as refused:
        run_training(manifest, ckpt, halved, fingerprint="run-b")
    message = str(refused.value)
    assert "take 2 micro-batches a step" in message and "this config takes 1" in message
    assert "gradient_accumulation_steps: 2 resumes it on 1 process, or delete" in message
    assert [step for step, _ in step_dirs(ckpt)] == [4, 8]


class PoisonedBatches:
    """Wraps a batch source; batches `poisoned(n)` picks (1-based) have every label ignored,
    so their loss is NaN."""

    def __init__(self, inner: PackedBatches, poisoned):
        self.inner, self.poisoned, self.count = inner, poisoned, 0

    def __next__(self):
        inputs, labels = next(self.inner)
        self.count += 1
        return inputs, torch.full_like(labels, -100) if self.poisoned(self.count) else labels

    def state(self) -> dict:
        return self.inner.state()

    def load_state(self, state: dict) -> None:
        self.inner.load_state(state)


def test_non_finite_steps_are_skipped_and_counted(manifest: Path, tmp_path: Path) -> None:
    inner = PackedBatches(TokenStream(manifest, "train"), 16, 4, seed=0)
    metrics, model = run_training(
        manifest, tmp_path / "ckpt", train_batches=PoisonedBatches(inner, lambda n: n == 5)
    )
    assert metrics["skipped_steps"] == 1 and metrics["steps"] == 8
    assert [step for step, _ in metrics["loss_history"]] == [1, 2, 4, 5, 6, 7, 8]
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_steps_read_from_the_device_in_batches_give_the_same_run(
    manifest: Path, tmp_path: Path, optimizer: str
) -> None:
    still = dataclasses.replace(MODEL, dropout=0.0)
    runs = {}
    for log_steps in (1, 3):
        config = dataclasses.replace(TRAINING, optimizer=optimizer, log_steps=log_steps)
        inner = PackedBatches(TokenStream(manifest, "train"), 16, 4, seed=0)
        runs[log_steps] = run_training(
            manifest,
            tmp_path / str(log_steps),
            config,
            train_batches=PoisonedBatches(inner, lambda n: n == 5),
            model_config=still,
        )
    (every, every_model), (batched, batched_model) = runs[1], runs[3]
    assert batched["skipped_steps"] == every["skipped_steps"] == 1
    assert batched["loss_history"] == every["loss_history"]
    assert [entry["step"] for entry in batched["log_history"]] == [3, 6, 8]
    for a, b in zip(every_model.parameters(), batched_model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_too_many_non_finite_steps_in_a_row_stop_the_run_with_the_checkpoint_intact(
    manifest: Path, tmp_path: Path
) -> None:
    ckpt = tmp_path / "ckpt"
    config = dataclasses.replace(TRAINING, max_consecutive_skips=3)
    inner = PackedBatches(TokenStream(manifest, "train"), 16, 4, seed=0)
    poisoned = PoisonedBatches(inner, lambda n: n > 8)  # from step 5's first micro-batch on
    with pytest.raises(NonFiniteTrainingError, match="stopping at step 7: 3 steps in a row") as err:
        run_training(manifest, ckpt, config, train_batches=poisoned)
    assert "max_consecutive_skips" in str(err.value) and str(ckpt) in str(err.value)
    assert [step for step, _ in step_dirs(ckpt)] == [4]
    assert latest_checkpoint(ckpt) == ckpt / "step_4"
    state = load_checkpoint(ckpt / "step_4", create_model_from_config(MODEL))
    assert state["progress"]["skipped_steps"] == 0


def test_seq_len_longer_than_the_model_is_refused(manifest: Path, tmp_path: Path) -> None:
    config = dataclasses.replace(TRAINING, seq_len=64)
    with pytest.raises(
        ValueError, match="seq_len 64 exceeds the model.s max_position_embeddings 32: lower"
    ):
        run_training(manifest, tmp_path / "ckpt", config)


# ---------------------------------------------------------------------------- metrics


def test_token_bytes_count_the_utf8_bytes_of_what_each_token_stands_for(spm_model: Path) -> None:
    processor = load_tokenizer(spm_model).processor
    lengths = token_byte_lengths(spm_model)
    assert len(lengths) == processor.get_piece_size()
    assert all(lengths[index] == 0 for index in SPECIAL_IDS.values())
    byte_ids = [i for i in range(len(lengths)) if processor.is_byte(i)]
    assert len(byte_ids) == 256 and all(lengths[i] == 1 for i in byte_ids)
    text = "def parse(line):\n    return {k: v for k, v in pairs}  # ünïcode ☃ 12345\n\tx = 'é'\n"
    ids = processor.encode(text)
    assert any(processor.is_byte(i) for i in ids)
    assert int(lengths[ids].sum()) == len(text.encode("utf-8"))


def test_validation_reports_bits_per_byte_of_the_target_tokens(
    manifest: Path, tmp_path: Path
) -> None:
    token_bytes = torch.arange(16) % 3
    config = dataclasses.replace(TRAINING, total_steps=4, eval_batches=3)
    metrics, _ = run_training(manifest, tmp_path / "ckpt", config, token_bytes=token_bytes)
    val = TokenStream(manifest, "val")
    batches = list(eval_batches(val, 16, 4))[:3]
    tokens = sum(labels.numel() for _, labels in batches)
    num_bytes = sum(int(token_bytes[labels].sum()) for _, labels in batches)
    expected = metrics["val_loss"] * tokens / math.log(2) / num_bytes
    assert metrics["val_bpb"] == pytest.approx(expected, rel=1e-9)


def test_peak_flops_is_measured_on_cpu_and_looked_up_for_gpus(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert 1e8 < peak_flops(torch.device("cpu")) < 1e14
    names = {
        "NVIDIA H100 80GB HBM3": 989e12,
        "NVIDIA H100 PCIe": 756e12,
        "NVIDIA A100-SXM4-80GB": 312e12,
        "NVIDIA L40S": 362e12,
        "NVIDIA L4": 121e12,
        "Tesla V100-SXM2-16GB": None,
    }
    for name, flops in names.items():
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device, name=name: name)
        assert peak_flops(torch.device("cuda", 0)) == flops, name


# ---------------------------------------------------------------------------- device, tracking


def test_device_manager_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    manager = DeviceManager("cpu", threads=1)
    assert manager.device.type == "cpu"
    info = manager.get_device_info()
    assert info["type"] == "cpu" and info["threads"] == 1 and info["torch_version"]
    for mode in ("auto", "no", "bf16", "fp16"):
        assert manager.autocast_dtype(mode) is None
    model = torch.nn.Linear(2, 2)
    assert manager.wrap_model(model, fsdp=True) is model
    assert DeviceManager(None, threads=1).device.type in ("cpu", "cuda", "mps")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        DeviceManager("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="'cuda' was asked for"):
            DeviceManager("cuda")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    DeviceManager("cpu", threads=4)
    assert torch.get_num_threads() == 2


def test_disabled_tracker_does_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert tracking_uri(TrackingConfig()) == f"sqlite:///{tmp_path}/results/mlflow.db"
    with Tracker(TrackingConfig(enabled=False), "run", {"a": 1}) as tracker:
        tracker.log_metrics({"loss": 1.0}, 1)
    assert not (tmp_path / "results").exists()


# ------------------------------------------------------------------- final folder, pretrain


def test_final_folder_round_trips(tmp_path: Path, spm_model: Path) -> None:
    torch.manual_seed(0)
    model = create_model_from_config(MODEL)
    save_final(tmp_path / "final", model, MODEL, spm_model, {"val_loss": 1.5})
    files = {p.name for p in (tmp_path / "final").iterdir()}
    assert files == {
        "model.safetensors",
        "config.json",
        "tokenizer.model",
        "metrics.json",
        "tokenizer_config.json",
        "generation_config.json",
    }
    config_json = read_json(tmp_path / "final" / "config.json")
    assert config_json["model_type"] == "llama" and config_json["helox"]["hidden_size"] == 32
    loaded, config = load_final(tmp_path / "final", "cpu")
    assert config == MODEL and not loaded.training
    ids = torch.randint(0, 16, (2, 8))
    model.eval()
    assert torch.equal(loaded(ids).logits, model(ids).logits)


def test_pretrain_end_to_end(manifest: Path, tmp_path: Path, spm_model: Path) -> None:
    output = tmp_path / "pretrain" / "final"
    model_config = dataclasses.replace(MODEL, vocab_size=None, dropout=0.0)
    training = dataclasses.replace(TRAINING, total_steps=30, eval_steps=15, save_steps=15)
    tracking = TrackingConfig(uri=f"sqlite:///{tmp_path}/mlflow.db", experiment="test")
    metrics = run_pretrain(
        manifest, spm_model, output, model_config, training, seed=3, tracking=tracking, threads=1
    )
    saved = read_json(output / "metrics.json")
    for key in (
        "val_loss",
        "val_perplexity",
        "val_bpb",
        "unigram_val_loss",
        "train_tokens_seen",
        "steps",
        "elapsed_seconds",
        "parameters",
        "loss_history",
    ):
        assert key in saved
    assert saved["steps"] == 30 and saved["train_tokens_seen"] == 30 * 2 * 4 * 16
    assert saved["val_loss"] < 0.8 * saved["unigram_val_loss"]
    assert saved["unigram_val_loss"] == pytest.approx(metrics["unigram_val_loss"])
    assert 0 < saved["val_bpb"] < math.inf
    assert (output / "tokenizer.model").read_bytes() == spm_model.read_bytes()
    _, config = load_final(output)
    assert config.vocab_size == 16
    assert [step for step, _ in step_dirs(tmp_path / "pretrain" / "checkpoints")] == [15, 30]

    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        logged = dict(db.execute("SELECT key, COUNT(*) FROM metrics GROUP BY key").fetchall())
    assert logged["train/loss"] == 30 and logged["val/loss"] == 2 and logged["val/bpb"] == 2
    assert logged["train/mfu"] == 30

    again = run_pretrain(
        manifest,
        spm_model,
        output,
        model_config,
        dataclasses.replace(training, log_steps=5),
        seed=3,
        tracking=TrackingConfig(enabled=False),
        threads=1,
    )
    assert again["loss_history"] == metrics["loss_history"]
    assert again["val_loss"] == metrics["val_loss"]


def test_pretrain_refuses_a_vocabulary_smaller_than_the_tokenizer(
    manifest: Path, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="model.vocab_size 8 is smaller than the tokenizer's"):
        run_pretrain(
            manifest,
            tmp_path / "spm.model",
            tmp_path / "final",
            dataclasses.replace(MODEL, vocab_size=8),
            TRAINING,
            seed=0,
            tracking=TrackingConfig(enabled=False),
            threads=1,
        )


def test_muon_takes_the_hidden_matrices_and_adamw_the_rest(manifest: Path, tmp_path: Path) -> None:
    config = dataclasses.replace(TRAINING, optimizer="muon")
    model = create_model_from_config(MODEL)
    optimizer = build_optimizer(model, config, torch.device("cpu"))
    muon, adamw = optimizer.optimizers
    names = {id(p): n for n, p in model.named_parameters()}
    muon_names = {names[id(p)] for group in muon.param_groups for p in group["params"]}
    assert muon_names == {n for n, p in model.named_parameters() if p.dim() == 2 and "layers." in n}
    assert "model.embed_tokens.weight" in {
        names[id(p)] for group in adamw.param_groups for p in group["params"]
    }

    # no dropout: the first MFU probe of a process draws from the global RNG
    still = dataclasses.replace(MODEL, dropout=0.0)
    whole, whole_model = run_training(manifest, tmp_path / "whole", config, model_config=still)
    assert whole["loss_history"][-1][1] < whole["loss_history"][0][1]
    with pytest.raises(Crash):
        run_training(
            manifest, tmp_path / "crashed", config, hooks=[crash_after(6)], model_config=still
        )
    resumed, resumed_model = run_training(
        manifest, tmp_path / "crashed", config, model_config=still
    )
    assert resumed["loss_history"] == whole["loss_history"]
    for a, b in zip(whole_model.parameters(), resumed_model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_z_loss_adds_the_squared_log_partition_function() -> None:
    logits = torch.tensor([[[0.0, math.log(3.0)], [5.0, 5.0]]])
    labels = torch.tensor([[1, -100]])
    assert z_loss(logits, labels).item() == pytest.approx(math.log(4.0) ** 2)


def test_z_loss_changes_training_only_when_set(manifest: Path, tmp_path: Path) -> None:
    still = dataclasses.replace(MODEL, dropout=0.0)
    losses = {
        weight: run_training(
            manifest,
            tmp_path / str(weight),
            dataclasses.replace(TRAINING, z_loss=weight),
            model_config=still,
        )[0]["loss_history"]
        for weight in (0.0, 1e-2)
    }
    plain, _ = run_training(manifest, tmp_path / "plain", model_config=still)
    assert losses[0.0] == plain["loss_history"]
    assert losses[1e-2][1:] != plain["loss_history"][1:]


def test_muon_makes_torchs_update_in_fp32() -> None:
    torch.manual_seed(0)
    ours = torch.nn.Parameter(torch.randn(48, 16))
    theirs = torch.nn.Parameter(ours.detach().clone())
    optimizers = [
        Muon([ours], lr=0.1, weight_decay=0.1),
        torch.optim.Muon([theirs], lr=0.1, weight_decay=0.1, adjust_lr_fn="match_rms_adamw"),
    ]
    for _ in range(3):
        grad = torch.randn(48, 16)
        for param, optimizer in zip((ours, theirs), optimizers, strict=True):
            param.grad = grad.clone()
            optimizer.step()
    assert torch.allclose(ours, theirs, atol=5e-3)
    assert not torch.allclose(ours, theirs, atol=1e-6)  # bf16 against fp32


def test_muon_orthogonalises_a_stack_of_matrices_as_each_alone() -> None:
    torch.manual_seed(0)
    for shape in ((48, 16), (16, 48)):
        matrices = torch.randn(3, *shape)
        stacked = orthogonalise(matrices)
        for matrix, result in zip(matrices, stacked, strict=True):
            assert torch.allclose(result, orthogonalise(matrix), atol=1e-5)
        singular = torch.linalg.svdvals(stacked)
        assert singular.min() > 0.5 and singular.max() < 1.3  # near-orthogonal, as designed


def test_muon_with_found_inf_set_leaves_weights_and_momentum_untouched() -> None:
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(8, 4)) for _ in range(3)]
    optimizer = Muon(params, lr=0.1, weight_decay=0.1)
    for param in params:
        param.grad = torch.randn(8, 4)
    optimizer.step()
    before = [p.detach().clone() for p in params]
    momentum = [optimizer.state[p]["momentum_buffer"].clone() for p in params]
    for param in params:
        param.grad = torch.full((8, 4), math.nan)
    optimizer.found_inf = torch.tensor(1.0)
    optimizer.step()
    assert all(torch.equal(p, b) for p, b in zip(params, before, strict=True))
    assert all(
        torch.equal(optimizer.state[p]["momentum_buffer"], m)
        for p, m in zip(params, momentum, strict=True)
    )
    for param in params:
        param.grad = torch.randn(8, 4)
    optimizer.found_inf = torch.tensor(0.0)
    optimizer.step()
    assert all(not torch.equal(p, b) for p, b in zip(params, before, strict=True))


def share_orthogonalisation(rank: int, rendezvous: str, matrices: torch.Tensor) -> None:
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=2
    )
    try:
        assert torch.equal(orthogonalise_shared(matrices), orthogonalise(matrices))
    finally:
        torch.distributed.destroy_process_group()


def test_muon_under_two_processes_shares_the_matrices_and_gathers_every_result(
    tmp_path: Path,
) -> None:
    matrices = torch.randn(5, 8, 12)  # an odd count: the second process gets one padded slot
    torch.multiprocessing.spawn(
        share_orthogonalisation, args=(str(tmp_path / "rendezvous"), matrices), nprocs=2
    )


def orthogonalise_row_shards(rank: int, rendezvous: str, matrices: torch.Tensor) -> None:
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=2
    )
    try:
        mesh = init_device_mesh("cpu", (2,))
        sharded = [distribute_tensor(m, mesh, [Shard(0)]) for m in matrices]
        rows = torch.stack([s.to_local() for s in sharded])
        ours = orthogonalise_sharded(rows, sharded[0])
        assert torch.equal(ours, orthogonalise(matrices).chunk(2, dim=1)[rank])
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.parametrize("shape", [(3, 7, 5), (1, 4, 9)], ids=["uneven-rows", "one-matrix"])
def test_muon_orthogonalises_fsdp_row_shards_as_whole_matrices(
    tmp_path: Path, shape: tuple[int, int, int]
) -> None:
    """Rows split 4 + 3 and counts that leave a process without a matrix still give each
    process exactly its rows of the whole matrices' result."""
    matrices = torch.randn(*shape)
    torch.multiprocessing.spawn(
        orthogonalise_row_shards, args=(str(tmp_path / "rendezvous"), matrices), nprocs=2
    )


def test_float8_trains_the_projections_and_keeps_the_checkpoint_format(
    manifest: Path, tmp_path: Path
) -> None:
    pytest.importorskip("torchao")
    from torchao.float8.float8_linear import Float8Linear

    still = dataclasses.replace(MODEL, dropout=0.0)
    plain, _ = run_training(manifest, tmp_path / "plain", model_config=still)
    config = dataclasses.replace(TRAINING, float8=True)
    float8, model = run_training(manifest, tmp_path / "float8", config, model_config=still)
    converted = {n for n, m in model.named_modules() if isinstance(m, Float8Linear)}
    assert converted == {
        n for n, m in model.named_modules() if n.endswith("_proj") and "layers." in n
    }
    assert float8["loss_history"][-1][1] < float8["loss_history"][0][1]
    assert float8["loss_history"] != plain["loss_history"]  # the matmuls did change
    assert float8["val_loss"] == pytest.approx(plain["val_loss"], rel=0.05)
    reloaded = create_model_from_config(still)
    load_checkpoint(latest_checkpoint(tmp_path / "float8"), reloaded)
    assert set(reloaded.state_dict()) == set(model.state_dict())


def test_a_checkpoint_that_predates_a_model_switch_counts_it_as_its_default(tmp_path) -> None:
    saved = dataclasses.asdict(MODEL)
    del saved["qk_norm"], saved["logit_softcap"]
    check_model_config(saved, MODEL, tmp_path)
    with pytest.raises(ConfigMismatchError, match="qk_norm: checkpoint False vs current True"):
        check_model_config(saved, dataclasses.replace(MODEL, qk_norm=True), tmp_path)
