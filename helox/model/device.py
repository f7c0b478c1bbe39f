"""Device choice (cuda, then mps, then cpu), precision, threads, and the torchrun process
group with DistributedDataParallel or FSDP2 (`fully_shard`) around the model."""

from __future__ import annotations

import ctypes
import logging
import os
import platform
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.nn.parallel import DistributedDataParallel

from helox.common.distributed import DistributedEnv

log = logging.getLogger(__name__)

DEVICE_TYPES = ("cpu", "cuda", "mps")
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, from glibc's malloc.h
KEEP_BYTES = 1 << 30


def keep_freed_memory() -> None:
    """Have glibc keep freed blocks of any size for reuse instead of unmapping them.

    A CPU training step frees and reallocates the same few hundred MB of activations
    every step; above glibc's 32 MB mmap ceiling each reallocation costs fresh pages,
    page faults and kernel zeroing (76 000 faults and 2-4% of a step in
    benchmarks/train_mfu.py). Nothing happens where libc is not glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(M_MMAP_THRESHOLD, KEEP_BYTES)
    libc.mallopt(M_TRIM_THRESHOLD, KEEP_BYTES)


def available(device_type: str) -> bool:
    if device_type == "cuda":
        return torch.cuda.is_available()
    if device_type == "mps":
        return torch.backends.mps.is_available()
    return device_type == "cpu"


class DeviceManager:
    """Pick the device for this process and say how to run on it.

    On CPU, `threads` is the budget of the whole machine, shared by the processes torchrun
    started on it; without it, OMP_NUM_THREADS or this process's cores are shared likewise.
    """

    def __init__(self, force_device: str | None = None, threads: int | None = None):
        self.dist = DistributedEnv.from_environ()
        requested = force_device or "auto"
        if requested == "auto":
            device_type = next(t for t in ("cuda", "mps", "cpu") if available(t))
        elif requested not in DEVICE_TYPES:
            raise ValueError(f"unknown device {requested!r}; use one of auto, cpu, cuda, mps")
        elif not available(requested):
            raise ValueError(
                f"device {requested!r} was asked for but is not available on this machine; "
                "ask for auto or cpu (a stage's `device` key, or a command's --device)"
            )
        else:
            device_type = requested
        if device_type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(self.device)
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        else:
            self.device = torch.device(device_type)
        if device_type == "cpu":
            torch.set_num_threads(self.threads_per_process(threads))
            keep_freed_memory()

    def threads_per_process(self, threads: int | None) -> int:
        if threads:
            return max(1, threads // self.dist.local_world_size)
        if "OMP_NUM_THREADS" in os.environ:
            return max(1, int(os.environ["OMP_NUM_THREADS"]))
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        return max(1, (cores or 1) // self.dist.local_world_size)

    def get_device_info(self) -> dict:
        if self.device.type == "cuda":
            name, count = torch.cuda.get_device_name(self.device), torch.cuda.device_count()
        else:
            name, count = platform.processor() or platform.machine(), 1
        return {
            "type": self.device.type,
            "name": name,
            "count": count,
            "torch_version": torch.__version__,
            "threads": torch.get_num_threads(),
            "rank": self.dist.rank,
            "world_size": self.dist.world_size,
        }

    def autocast_dtype(self, mixed_precision: str) -> torch.dtype | None:
        """bf16 on CUDA for "auto"/"bf16", fp16 on CUDA for "fp16", else None (plain fp32).

        CPU and MPS always run fp32: bf16 autocast there is many times slower.
        """
        if mixed_precision == "no":
            return None
        if self.device.type != "cuda":
            if mixed_precision != "auto":
                log.warning(
                    "mixed_precision %s ignored on %s: running fp32",
                    mixed_precision,
                    self.device.type,
                )
            return None
        if mixed_precision == "fp16":
            return torch.float16
        if mixed_precision in ("auto", "bf16") and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        log.warning("this GPU has no bf16 support: running fp32")
        return None

    def autocast(self, mixed_precision: str) -> AbstractContextManager:
        """The autocast context of `autocast_dtype`, or one that does nothing."""
        dtype = self.autocast_dtype(mixed_precision)
        return nullcontext() if dtype is None else torch.autocast(self.device.type, dtype=dtype)

    # ------------------------------------------------------------------ several processes

    def init_distributed(self) -> None:
        """Join the torchrun process group (nccl on CUDA, else gloo); nothing for one process."""
        if self.dist.is_distributed and not dist.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            dist.init_process_group(
                backend=backend, rank=self.dist.rank, world_size=self.dist.world_size
            )

    def wrap_model(
        self, model: nn.Module, fsdp: bool = False, param_dtype: torch.dtype | None = None
    ) -> nn.Module:
        """`model` itself for one process; else DDP around it, or with `fsdp` the same model
        sharded in place by FSDP2, one unit per block, gathering parameters in `param_dtype`."""
        if not self.dist.is_distributed:
            return model
        if not fsdp:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            # Gradients live in DDP's reduction buckets instead of beside a copy of them.
            return DistributedDataParallel(
                model, device_ids=device_ids, gradient_as_bucket_view=True
            )
        policy = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)
        for block in model.model.layers:
            fully_shard(block, mp_policy=policy)
        fully_shard(model, mp_policy=policy)
        return model

    @contextmanager
    def gradient_sync(self, wrapped: nn.Module, enabled: bool) -> Iterator[None]:
        """Let backward reduce gradients across processes only when `enabled`."""
        if enabled or not self.dist.is_distributed:
            yield
        elif isinstance(wrapped, DistributedDataParallel):
            with wrapped.no_sync():
                yield
        else:
            wrapped.set_requires_gradient_sync(False)
            try:
                yield
            finally:
                wrapped.set_requires_gradient_sync(True)

    def mean_over_processes(self, value: Tensor) -> Tensor:
        """The mean of `value` over every process (itself for one process)."""
        if not dist.is_initialized():
            return value
        total = value.detach().clone()
        dist.all_reduce(total)
        return total / self.dist.world_size

    def broadcast_from_main(self, value: int) -> int:
        """Rank 0's `value` on every process."""
        if not dist.is_initialized():
            return value
        tensor = torch.tensor([value], dtype=torch.int64, device=self.device)
        dist.broadcast(tensor, src=0)
        return int(tensor.item())

    def barrier(self) -> None:
        if dist.is_initialized():
            dist.barrier()

    def shutdown(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()
