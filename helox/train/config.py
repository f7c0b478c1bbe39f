"""The keys of a training stage: pretraining's section, which SFT and DPO extend."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from helox.common.config_files import section_from_file


@dataclass
class TrainingConfig:
    SECTION: ClassVar[str] = "pretrain"  # its section of a configuration

    seq_len: int = 256
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    learning_rate: float = 3e-3
    min_lr_ratio: float = 0.1
    lr_schedule: str = "cosine"
    decay_fraction: float = 0.2
    weight_decay: float = 0.1
    optimizer: str = "adamw"
    z_loss: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.95
    max_grad_norm: float = 1.0
    max_consecutive_skips: int = 25  # non-finite steps in a row before the run stops
    total_steps: int = 1000
    warmup_steps: int = 50
    eval_steps: int = 200
    eval_batches: int = 20
    save_steps: int = 200
    save_total_limit: int = 2
    log_steps: int = 10
    mixed_precision: str = "auto"  # auto = bf16 autocast on CUDA, fp32 on CPU
    gradient_checkpointing: bool = False
    device: str = "auto"  # auto = cuda, then mps, then cpu
    compile: bool | str = "auto"  # auto = torch.compile on CUDA; true compiles on CPU too
    # The attention and MLP matmuls in float8 through torchao (helox.train.float8).
    float8: bool = False
    nproc: int = 1  # > 1: torchrun with this many processes (one per GPU)
    # Nodes of a Slurm allocation, each running `nproc` processes under one torchrun.
    nodes: int = 1
    # Seconds the nodes of a several-node job wait for each other before the job fails.
    rendezvous_timeout: int = 600
    fsdp: bool = False  # with nproc > 1: FSDP2 sharding instead of DDP
    # A Hugging Face folder to start from (helox.model.import_hf); its tokenizer replaces
    # the tokenizer stage's. "" = pretraining starts from random weights, SFT from pretraining.
    init_from: str = ""

    @property
    def processes(self) -> int:
        """Training processes over all nodes."""
        return self.nproc * self.nodes

    @classmethod
    def from_file(cls, path: str | Path) -> TrainingConfig:
        """Pretraining's keys (sft's or dpo's for those classes) from a file, checked."""
        return section_from_file(cls, path, cls.SECTION)
