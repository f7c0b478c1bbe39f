"""The training loop: optimizer steps, with logging, evaluation and checkpoints hung off it.

`Trainer.fit()` runs `config.total_steps` optimizer steps (helox.train.optim) over any batch
source that yields (input_ids, labels[, keyword tensors]) and can report and restore its
position, minimising an `Objective` (next-token loss by default, DPO's for preference
pairs), so pretraining, SFT and DPO share it. It resumes from the newest intact checkpoint
of the same run fingerprint, and refuses one written for a different model. Under torchrun
every process runs this same loop on its own slice of each batch; rank 0 alone logs and writes.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Sequence
from itertools import islice
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import Tensor
from torch.distributed.tensor import DTensor

from helox.model.config import sequence_limit
from helox.model.device import DeviceManager
from helox.model.network import HeloxLM
from helox.train.checkpoint import (
    ConfigMismatchError,
    check_layout,
    check_model_config,
    checkpoint_config,
    latest_checkpoint,
    load_checkpoint,
    remove_checkpoints,
    save_checkpoint,
)
from helox.train.config import TrainingConfig
from helox.train.evaluate import Batch, to_device
from helox.train.float8 import float8_projections
from helox.train.metrics import peak_flops
from helox.train.objective import NextTokenObjective, Objective
from helox.train.optim import build_optimizer, step_unless
from helox.train.schedule import make_schedule
from helox.train.steps import Progress, StepResult, format_seconds
from helox.train.tracking import Tracker

log = logging.getLogger(__name__)


class BatchSource(Protocol):
    """Yields (input_ids, labels[, keyword tensors for the model]) forever; its position
    can be saved. Packed SFT rows pass `position_ids` and `segment_ids` as keywords."""

    def __next__(self) -> Batch: ...

    def state(self) -> dict: ...

    def load_state(self, state: dict) -> None: ...


ValBatchesFn = Callable[[], Iterable[tuple[Tensor, Tensor]]]


class NonFiniteTrainingError(RuntimeError):
    """Too many steps in a row had a non-finite loss or gradient."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


Hook = Callable[["Trainer", StepResult], None]


class Trainer:
    """Holds the model, optimizer and progress of one run; `fit()` is the loop.

    `token_bytes` (bytes per token id) adds bits per byte to the default objective's
    evaluation; `objective` replaces next-token prediction (with `config.z_loss`).
    """

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
        token_bytes: Tensor | None = None,
        objective: Objective | None = None,
    ):
        longest, key = sequence_limit(model.config)
        if config.seq_len > longest:
            raise ValueError(
                f"training seq_len {config.seq_len} exceeds the model's {key} {longest}: "
                "lower the stage's seq_len (pretrain.seq_len, sft.seq_len or dpo.seq_len)"
            )
        self.config = config
        self.device = device_manager.device
        self.device_manager = device_manager
        self.world_size = device_manager.dist.world_size
        self.is_main = device_manager.dist.is_main
        self.flops_per_token = model.flops_per_token(config.seq_len)
        self.model = model.to(self.device)
        self.model.set_gradient_checkpointing(config.gradient_checkpointing)
        if config.float8:
            float8_projections(self.model, self.device)
        autocast_dtype = device_manager.autocast_dtype(config.mixed_precision)
        self.autocast = device_manager.autocast(config.mixed_precision)
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=autocast_dtype == torch.float16
        )
        self.parallel_model = device_manager.wrap_model(self.model, config.fsdp, autocast_dtype)
        compile_model = config.compile is True or (
            config.compile == "auto" and self.device.type == "cuda"
        )
        self.train_model = (
            torch.compile(self.parallel_model) if compile_model else self.parallel_model
        )
        self.optimizer = build_optimizer(self.model, config, self.device)
        self.schedule = make_schedule(config)
        self.train_batches = train_batches
        self.val_batches_fn = val_batches_fn
        self.objective = objective or NextTokenObjective(config.z_loss, token_bytes)
        self.checkpoint_dir = Path(checkpoint_dir)
        self.fingerprint = fingerprint
        self.tracker = tracker if self.is_main else None
        self.hooks = list(hooks)
        self.progress = Progress()
        self.tokens_per_step = (
            config.batch_size * config.seq_len * config.gradient_accumulation_steps
        ) * self.world_size
        self._consecutive_skips = 0
        self._last_saved_step = -1
        self._last_eval: dict[str, float] = {}
        self._unread: list[StepResult] = []
        self._clock = time.perf_counter()
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
        self._clock = started
        self.model.train()
        while self.progress.step < self.config.total_steps:
            result = self.train_step()
            self.progress.elapsed_seconds = elapsed_before + time.perf_counter() - started
            step = result.step
            if step % self.config.log_steps == 0 or step == self.config.total_steps:
                self.read_steps()
                self.log_progress(result)
            if step % self.config.eval_steps == 0:
                self.evaluate()
            if step % self.config.save_steps == 0:
                self.save()
            for hook in self.hooks:
                hook(self, result)
        self.read_steps()
        if self._last_eval.get("step") != self.progress.step:
            self.evaluate()
        self.progress.elapsed_seconds = elapsed_before + time.perf_counter() - started
        if self._last_saved_step != self.progress.step:
            self.save()
        return self.metrics()

    def train_step(self) -> StepResult:
        """One optimizer step over `gradient_accumulation_steps` micro-batches.

        Nothing here waits for the device (except under fp16's GradScaler): a non-finite
        loss or gradient norm skips the update on the device, and `read_steps` counts it.
        """
        step = self.progress.step
        lr = self.schedule(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        accumulation = self.config.gradient_accumulation_steps
        loss_sum = torch.zeros((), device=self.device)
        for micro in range(accumulation):
            input_ids, labels, extra = to_device(next(self.train_batches), self.device)
            last = micro == accumulation - 1
            with self.device_manager.gradient_sync(self.parallel_model, last):
                with self.autocast:
                    loss, objective = self.objective.loss(
                        self.train_model, input_ids, labels, extra
                    )
                self.scaler.scale(objective / accumulation).backward()
            loss_sum += loss.detach()
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(
            self.model.parameters(), self.config.max_grad_norm or math.inf, foreach=True
        )
        if isinstance(grad_norm, DTensor):
            grad_norm = grad_norm.full_tensor()
        mean_loss = self.device_manager.mean_over_processes(loss_sum / accumulation)
        grad_norm = grad_norm.float()
        if self.scaler.is_enabled():
            # GradScaler skips overflowing gradients itself (and lowers its scale).
            found_inf = (~torch.isfinite(mean_loss)).float()
            if not found_inf.item():
                self.scaler.step(self.optimizer)
                self.scaler.update()
        else:
            found_inf = (~(torch.isfinite(mean_loss) & torch.isfinite(grad_norm))).float()
            step_unless(self.optimizer, found_inf)
        self.optimizer.zero_grad(set_to_none=True)
        result = StepResult(step + 1, lr, torch.stack([mean_loss.float(), grad_norm, found_inf]))
        self._unread.append(result)
        self.progress.step = step + 1
        self.progress.tokens_seen += self.tokens_per_step
        return result

    def read_steps(self) -> None:
        """Read every step not yet read in one transfer from the device: record its loss,
        count skipped updates (stopping after too many in a row), and add the time the
        device took to the training time. The loop calls this on log, eval and save steps."""
        if not self._unread:
            return
        values = torch.stack([result.readings for result in self._unread]).tolist()
        unread, self._unread = self._unread, []
        for result, (loss, grad_norm, skipped) in zip(unread, values, strict=True):
            result.values = [loss, grad_norm, skipped]
            if skipped:
                self._skip(result.step, loss, grad_norm)
            else:
                self._consecutive_skips = 0
                self.progress.loss_history.append([result.step, loss])
        now = time.perf_counter()
        self.progress.train_seconds += now - self._clock
        self._interval_seconds += now - self._clock
        self._clock = now

    def _skip(self, step: int, loss: float, grad_norm: float) -> None:
        """Count a step whose update was dropped; stop the run after too many in a row."""
        self.progress.skipped_steps += 1
        self._consecutive_skips += 1
        log.warning("step %d: loss %s, grad norm %s; its update was skipped", step, loss, grad_norm)
        limit = self.config.max_consecutive_skips
        if self._consecutive_skips >= limit:
            raise NonFiniteTrainingError(
                f"stopping at step {step}: {limit} steps in a row had a non-finite loss or "
                f"gradient (max_consecutive_skips); no checkpoint was written since, so the "
                f"newest in {self.checkpoint_dir} is intact. Lower learning_rate or check the "
                f"data, then rerun to resume from it"
            )

    # ------------------------------------------------------------------ side concerns

    @functools.cached_property
    def peak_flops(self) -> float | None:
        """Peak FLOP/s of this process's device (measured once on CPU), None if unknown."""
        return peak_flops(self.device)

    def log_progress(self, result: StepResult) -> None:
        """Mean loss since the last log line, learning rate, throughput, MFU, elapsed, ETA."""
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
        peak = self.peak_flops
        mfu = tokens_per_second * self.flops_per_token / (peak * self.world_size) if peak else None
        log.info(
            "step %d/%d loss %.4f lr %.2e grad_norm %.3f tok/s %.0f mfu %s elapsed %s eta %s%s",
            result.step,
            self.config.total_steps,
            loss,
            result.lr,
            result.grad_norm,
            tokens_per_second,
            "n/a" if mfu is None else f"{100 * mfu:.1f}%",
            format_seconds(self.progress.elapsed_seconds),
            format_seconds(eta),
            f" skipped {self.progress.skipped_steps}" if self.progress.skipped_steps else "",
        )
        metrics = {
            "train/loss": loss,
            "train/lr": result.lr,
            "train/grad_norm": result.grad_norm,
            "train/tokens_per_second": tokens_per_second,
            "train/tokens_seen": self.progress.tokens_seen,
            "train/skipped_steps": self.progress.skipped_steps,
        }
        if mfu is not None:
            metrics["train/mfu"] = mfu
        self.progress.log_history.append({"step": result.step, **metrics})
        if self.tracker is not None:
            self.tracker.log_metrics(metrics, result.step)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """The objective's validation metrics (for next-token prediction: loss, perplexity and
        with `token_bytes` bits per byte) over at most `eval_batches` validation batches."""
        self.read_steps()
        score = self.objective.score(
            self.model,
            islice(self.val_batches_fn(), self.config.eval_batches),
            self.device,
            self.autocast,
        )
        self.model.train()
        step = self.progress.step
        self._last_eval = {"step": step, **score}
        self.progress.eval_history = [
            entry for entry in self.progress.eval_history if entry["step"] != step
        ] + [{**self._last_eval, "train/tokens_seen": self.progress.tokens_seen}]
        if self.is_main:
            log.info(
                "step %d %s",
                step,
                " ".join(f"{key} {value:.4g}" for key, value in score.items()),
            )
            if self.tracker is not None:
                self.tracker.log_metrics(
                    {
                        f"val/{key.removeprefix('val_')}": value
                        for key, value in self._last_eval.items()
                        if key != "step"
                    },
                    step,
                )
        self._clock = time.perf_counter()
        return self._last_eval

    def save(self) -> None:
        """Write a step checkpoint: every process gathers, rank 0 writes."""
        self.read_steps()
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
        if self.is_main:
            log.info("saved checkpoint %s", path)
        self._last_saved_step = self.progress.step
        self.device_manager.barrier()
        self._clock = time.perf_counter()

    def resume(self) -> None:
        """Continue from the newest intact checkpoint of this run.

        One written for a different model, or for another number of micro-batches a step
        (`check_layout`), is refused; one of another run of the same model (other data, seed
        or hyperparameters) is deleted, and training starts afresh.
        """
        latest = latest_checkpoint(self.checkpoint_dir) if self.is_main else None
        step = self.device_manager.broadcast_from_main(
            int(latest.name.removeprefix("step_")) if latest else -1
        )
        if step < 0:
            return
        path = self.checkpoint_dir / f"step_{step}"
        saved = checkpoint_config(path)
        try:
            check_model_config(saved["model"], self.model.config, path)
        except ConfigMismatchError as error:
            raise ConfigMismatchError(
                f"{error}; restore that model config to resume, or delete "
                f"{self.checkpoint_dir} to start afresh"
            ) from None
        if saved.get("fingerprint") != self.fingerprint:
            check_layout(saved["training"], self.config, self.checkpoint_dir)
            if self.is_main:
                log.warning(
                    "checkpoints in %s belong to a different run (data, seed or training "
                    "config changed); deleting them and starting fresh",
                    self.checkpoint_dir,
                )
                remove_checkpoints(self.checkpoint_dir)
            self.device_manager.barrier()
            return
        self.resume_from(path)

    def resume_from(self, path: str | Path) -> None:
        """Load model, optimizer, RNG and data position from one step checkpoint."""
        state = load_checkpoint(path, self.model, self.optimizer)
        self.train_batches.load_state(state["loader"])
        self.progress = Progress(**state["progress"])
        self._last_saved_step = self.progress.step
        if self.is_main:
            log.info("resumed from %s at step %d", path, self.progress.step)

    def metrics(self) -> dict:
        losses = self.progress.loss_history
        return {
            **{k: v for k, v in self._last_eval.items() if k != "step"},
            "train_loss": losses[-1][1] if losses else math.nan,
            "train_tokens_seen": self.progress.tokens_seen,
            "steps": self.progress.step,
            "seq_len": self.config.seq_len,
            "skipped_steps": self.progress.skipped_steps,
            "elapsed_seconds": self.progress.elapsed_seconds,
            "train_seconds": self.progress.train_seconds,
            "tokens_per_second": self.progress.tokens_seen / max(self.progress.train_seconds, 1e-9),
            "loss_history": losses,
            "log_history": self.progress.log_history,
            "eval_history": self.progress.eval_history,
        }
