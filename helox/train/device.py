"""Device choice (cuda, then mps, then cpu), autocast precision, and torchrun/DDP set-up."""

from __future__ import annotations

import logging
import os
import platform
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

log = logging.getLogger(__name__)

DEVICE_TYPES = ("cpu", "cuda", "mps")


@dataclass(frozen=True)
class DistributedEnv:
    """This process's place in a torchrun launch; a single process is rank 0 of 1."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_environ(cls) -> DistributedEnv:
        return cls(
            rank=int(os.environ.get("RANK", 0)),
            world_size=int(os.environ.get("WORLD_SIZE", 1)),
            local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        )

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def available(device_type: str) -> bool:
    if device_type == "cuda":
        return torch.cuda.is_available()
    if device_type == "mps":
        return torch.backends.mps.is_available()
    return device_type == "cpu"


class DeviceManager:
    """Pick the device for this process and say how to run on it.

    On CPU, torch uses `threads` threads, else OMP_NUM_THREADS, else this process's cores
    divided among the processes torchrun started on this machine.
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
                f"device {requested!r} was asked for (training.device) but is not available "
                f"on this machine; set device: auto or cpu"
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
            torch.set_num_threads(threads or self.default_threads())

    def default_threads(self) -> int:
        if "OMP_NUM_THREADS" in os.environ:
            return max(1, int(os.environ["OMP_NUM_THREADS"]))
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
        return max(1, (cores or 1) // local_processes)

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

    def init_distributed(self) -> None:
        """Join the torchrun process group (nccl on CUDA, else gloo); nothing for one process."""
        if self.dist.is_distributed and not dist.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            dist.init_process_group(
                backend=backend, rank=self.dist.rank, world_size=self.dist.world_size
            )

    def wrap_model(self, model: nn.Module) -> nn.Module:
        """DistributedDataParallel around `model` when launched by torchrun, else `model` itself."""
        if not self.dist.is_distributed:
            return model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)

    def barrier(self) -> None:
        if dist.is_initialized():
            dist.barrier()

    def shutdown(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()
