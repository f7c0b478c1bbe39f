"""The training loop: optimizer steps, with logging, evaluation and checkpoints hung off it.

`train()` runs `config.total_steps` AdamW steps over any batch source that yields
(input_ids, labels) pairs and can report and restore its position, so pretraining and
SFT share it. It resumes from the newest complete checkpoint of the same run fingerprint.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from helox.config import TrainingConfig
from helox.model import IGNORE_INDEX, HeloxLM
from helox.train.checkpoint import (
    checkpoint_fingerprint,
    latest_checkpoint,
    load_checkpoint,
    remove_checkpoints,
    save_checkpoint,
)
from helox.train.device import DeviceManager
from helox.train.schedule import WarmupCosine
from helox.train.tracking import Tracker

log = logging.getLogger(__name__)

MAX_CONSECUTIVE_SKIPS = 25


class BatchSource(Protocol):
    """Yields (input_ids, labels) LongTensor pairs forever; its position can be saved."""

    def __next__(self) -> tuple[Tensor, Tensor]: ...

    def state(self) -> dict: ...

    def load_state(self, state: dict) -> None: ...


ValBatchesFn = Callable[[], Iterable[tuple[Tensor, Tensor]]]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_optimizer(
    model: HeloxLM, config: TrainingConfig, device: torch.device
) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only; fused kernels on CUDA, foreach elsewhere."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    kernel = {"fused": True} if device.type == "cuda" else {"foreach": True}
    return torch.optim.AdamW(
        groups, lr=config.learning_rate, betas=(config.beta1, config.beta2), **kernel
    )


@dataclass
class Progress:
    """Everything about the run so far that a resumed run must continue from."""

    step: int = 0
    tokens_seen: int = 0
    skipped_steps: int = 0
    train_seconds: float = 0.0
    elapsed_seconds: float = 0.0
    loss_history: list[list[float]] = field(default_factory=list)
    val_history: list[list[float]] = field(default_factory=list)


@dataclass
class StepResult:
    step: int
    loss: float
    grad_norm: float
    lr: float
    seconds: float
    skipped: bool


Hook = Callable[["Trainer", StepResult], None]


class Trainer:
    """Holds the model, optimizer and progress of one run; `fit()` is the loop."""

    def __init__(
        self,
        model: HeloxLM,
        train_batches: BatchSource,
        val_batches_fn: ValBatchesFn,
        config: TrainingConfig,
        device_manager: DeviceManager,
        checkpoint_dir: str | Path,
        fingerprint: str,
        tracker: Tracker | None = None,
        hooks: Sequence[Hook] = (),
    ):
        if config.seq_len > model.config.max_position_embeddings:
            raise ValueError(
                f"training seq_len {config.seq_len} exceeds "
                f"model.max_position_embeddings {model.config.max_position_embeddings}"
            )
        self.config = config
        self.device = device_manager.device
        self.device_manager = device_manager
        self.is_main = device_manager.dist.is_main
        self.model = model.to(self.device)
        self.model.set_gradient_checkpointing(config.gradient_checkpointing)
        self.train_batches = train_batches
        self.val_batches_fn = val_batches_fn
        self.checkpoint_dir = Path(checkpoint_dir)
        self.fingerprint = fingerprint
        self.tracker = tracker if self.is_main else None
        self.hooks = list(hooks)
        self.optimizer = build_optimizer(self.model, config, self.device)
        self.schedule = WarmupCosine.from_config(config)
        autocast_dtype = device_manager.autocast_dtype(config.mixed_precision)
        self.autocast = (
            nullcontext()
            if autocast_dtype is None
            else torch.autocast(device_type=self.device.type, dtype=autocast_dtype)
        )
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=autocast_dtype == torch.float16
        )
        self.forward_model = torch.compile(self.model) if config.compile else self.model
        self.train_model = device_manager.wrap_model(self.forward_model)
        self.progress = Progress()
        self.tokens_per_step = (
            config.batch_size
            * config.seq_len
            * config.gradient_accumulation_steps
            * device_manager.dist.world_size
        )
        self._consecutive_skips = 0
        self._last_saved_step = -1
        self._last_eval: dict[str, float] = {}
        self._interval_seconds = 0.0
        self._interval_start_step = 0

    # ------------------------------------------------------------------ the loop

    def fit(self, resume_from: str | Path | None = None) -> dict:
        """Train to `total_steps` (resuming if possible), evaluate, checkpoint; return metrics.

        Without `resume_from`, continues from the newest checkpoint of this same run.
        """
        if resume_from:
            self.resume_from(resume_from)
        else:
            self.resume()
        elapsed_before, started = self.progress.elapsed_seconds, time.perf_counter()
        self._interval_start_step = self.progress.step
        self.model.train()
        while self.progress.step < self.config.total_steps:
            result = self.train_step()
            self.progress.elapsed_seconds = elapsed_before + time.perf_counter() - started
            step = result.step
            if step % self.config.log_steps == 0 or step == self.config.total_steps:
                self.log_progress(result)
            if step % self.config.eval_steps == 0:
                self.evaluate()
            if step % self.config.save_steps == 0:
                self.save()
            for hook in self.hooks:
                hook(self, result)
        if self._last_eval.get("step") != self.progress.step:
            self.evaluate()
        self.progress.elapsed_seconds = elapsed_before + time.perf_counter() - started
        if self._last_saved_step != self.progress.step:
            self.save()
        return self.metrics()

    def train_step(self) -> StepResult:
        """One optimizer step over `gradient_accumulation_steps` micro-batches."""
        started = time.perf_counter()
        step = self.progress.step
        lr = self.schedule(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        accumulation = self.config.gradient_accumulation_steps
        loss_sum = torch.zeros((), device=self.device)
        for micro in range(accumulation):
            input_ids, labels = next(self.train_batches)
            input_ids = input_ids.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)
            with self._grad_sync(micro == accumulation - 1):
                with self.autocast:
                    loss = self.train_model(input_ids, labels).loss
                self.scaler.scale(loss / accumulation).backward()
            loss_sum += loss.detach()
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(
            self.model.parameters(), self.config.max_grad_norm or math.inf, foreach=True
        )
        loss_value, norm_value = torch.stack([loss_sum / accumulation, grad_norm]).tolist()
        scaler_handles_overflow = self.scaler.is_enabled()
        skipped = not math.isfinite(loss_value) or (
            not math.isfinite(norm_value) and not scaler_handles_overflow
        )
        if skipped:
            self._skip(step, loss_value, norm_value)
        else:
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self._consecutive_skips = 0
            self.progress.loss_history.append([step + 1, loss_value])
        self.optimizer.zero_grad(set_to_none=True)
        seconds = time.perf_counter() - started
        self.progress.step = step + 1
        self.progress.tokens_seen += self.tokens_per_step
        self.progress.train_seconds += seconds
        self._interval_seconds += seconds
        return StepResult(step + 1, loss_value, norm_value, lr, seconds, skipped)

    def _skip(self, step: int, loss: float, grad_norm: float) -> None:
        self.progress.skipped_steps += 1
        self._consecutive_skips += 1
        log.warning(
            "step %d: loss %s, grad norm %s; skipping the update", step + 1, loss, grad_norm
        )
        if self._consecutive_skips >= MAX_CONSECUTIVE_SKIPS:
            raise RuntimeError(
                f"{self._consecutive_skips} consecutive steps had a non-finite loss or gradient; "
                f"lower learning_rate or check the data"
            )

    def _grad_sync(self, last_micro_batch: bool):
        """Under DDP, all-reduce gradients only on the last micro-batch of a step."""
        if last_micro_batch or self.train_model is self.forward_model:
            return nullcontext()
        return self.train_model.no_sync()

    # ------------------------------------------------------------------ side concerns

    def log_progress(self, result: StepResult) -> None:
        """Mean loss since the last log line, learning rate, throughput, elapsed time and ETA."""
        interval_steps = result.step - self._interval_start_step
        recent = [
            loss
            for step, loss in self.progress.loss_history[-interval_steps:]
            if step > self._interval_start_step
        ]
        loss = sum(recent) / len(recent) if recent else math.nan
        tokens_per_second = (
            interval_steps * self.tokens_per_step / self._interval_seconds
            if self._interval_seconds
            else 0.0
        )
        seconds_per_step = self._interval_seconds / max(1, interval_steps)
        eta = (self.config.total_steps - result.step) * seconds_per_step
        self._interval_seconds, self._interval_start_step = 0.0, result.step
        if not self.is_main:
            return
        log.info(
            "step %d/%d loss %.4f lr %.2e grad_norm %.3f tok/s %.0f elapsed %s eta %s%s",
            result.step,
            self.config.total_steps,
            loss,
            result.lr,
            result.grad_norm,
            tokens_per_second,
            format_seconds(self.progress.elapsed_seconds),
            format_seconds(eta),
            f" skipped {self.progress.skipped_steps}" if self.progress.skipped_steps else "",
        )
        if self.tracker is not None:
            self.tracker.log_metrics(
                {
                    "train/loss": loss,
                    "train/lr": result.lr,
                    "train/grad_norm": result.grad_norm,
                    "train/tokens_per_second": tokens_per_second,
                    "train/tokens_seen": self.progress.tokens_seen,
                    "train/skipped_steps": self.progress.skipped_steps,
                },
                result.step,
            )

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Mean loss over at most `eval_batches` validation batches, and its perplexity."""
        self.model.eval()
        loss_total = torch.zeros((), dtype=torch.float64, device=self.device)
        token_count = 0
        for input_ids, labels in islice(self.val_batches_fn(), self.config.eval_batches):
            count = int((labels != IGNORE_INDEX).sum())
            with self.autocast:
                loss = self.forward_model(
                    input_ids.to(self.device, non_blocking=True),
                    labels.to(self.device, non_blocking=True),
                ).loss
            loss_total += loss.double() * count
            token_count += count
        self.model.train()
        if token_count == 0:
            raise ValueError("validation produced no tokens to score")
        val_loss = float(loss_total) / token_count
        step = self.progress.step
        self._last_eval = {
            "step": step,
            "val_loss": val_loss,
            "val_perplexity": math.exp(min(val_loss, 700.0)),
        }
        self.progress.val_history = [
            entry for entry in self.progress.val_history if entry[0] != step
        ] + [[step, val_loss]]
        if self.is_main:
            log.info(
                "step %d val_loss %.4f perplexity %.2f",
                step,
                val_loss,
                self._last_eval["val_perplexity"],
            )
            if self.tracker is not None:
                self.tracker.log_metrics(
                    {"val/loss": val_loss, "val/perplexity": self._last_eval["val_perplexity"]},
                    step,
                )
        return self._last_eval

    def save(self) -> None:
        if self.is_main:
            path = save_checkpoint(
                self.checkpoint_dir,
                self.progress.step,
                self.model,
                self.optimizer,
                self.config,
                self.fingerprint,
                self.train_batches.state(),
                dataclasses.asdict(self.progress),
            )
            log.info("saved checkpoint %s", path)
        self._last_saved_step = self.progress.step
        self.device_manager.barrier()

    def resume(self) -> None:
        """Continue from the newest complete checkpoint of this run; drop another run's."""
        latest = latest_checkpoint(self.checkpoint_dir)
        if latest is None:
            return
        if checkpoint_fingerprint(latest) != self.fingerprint:
            log.warning(
                "checkpoints in %s belong to a different run (config or data changed); "
                "deleting them and starting fresh",
                self.checkpoint_dir,
            )
            if self.is_main:
                remove_checkpoints(self.checkpoint_dir)
            self.device_manager.barrier()
            return
        self.resume_from(latest)

    def resume_from(self, path: str | Path) -> None:
        """Load model, optimizer, RNG and data position from one step checkpoint."""
        state = load_checkpoint(path, self.model, self.optimizer)
        self.train_batches.load_state(state["loader"])
        self.progress = Progress(**state["progress"])
        self._last_saved_step = self.progress.step
        log.info("resumed from %s at step %d", path, self.progress.step)

    def metrics(self) -> dict:
        losses = self.progress.loss_history
        return {
            "val_loss": self._last_eval["val_loss"],
            "val_perplexity": self._last_eval["val_perplexity"],
            "train_loss": losses[-1][1] if losses else math.nan,
            "train_tokens_seen": self.progress.tokens_seen,
            "steps": self.progress.step,
            "skipped_steps": self.progress.skipped_steps,
            "elapsed_seconds": self.progress.elapsed_seconds,
            "train_seconds": self.progress.train_seconds,
            "tokens_per_second": self.progress.tokens_seen / max(self.progress.train_seconds, 1e-9),
            "loss_history": losses,
            "val_history": self.progress.val_history,
        }


def format_seconds(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def train(
    model: HeloxLM,
    train_batches: BatchSource,
    val_batches_fn: ValBatchesFn,
    config: TrainingConfig,
    device_manager: DeviceManager,
    checkpoint_dir: str | Path,
    fingerprint: str,
    tracker: Tracker | None = None,
    hooks: Sequence[Hook] = (),
) -> dict:
    """Train `model` to `config.total_steps` and return its metrics (see `Trainer.metrics`)."""
    trainer = Trainer(
        model,
        train_batches,
        val_batches_fn,
        config,
        device_manager,
        checkpoint_dir,
        fingerprint,
        tracker,
        hooks,
    )
    return trainer.fit()
