"""The settings of a fine-tuning stage's LoRA adapters (helox.model.lora), apart from torch so
that reading a configuration stays light."""

from __future__ import annotations

from dataclasses import dataclass, field

# The attention and MLP projections: QLoRA and litgpt adapt all of them for quality.
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class LoRAConfig:
    """A fine-tuning stage's adapters (`sft.lora`, `dpo.lora`); the stage trains every weight
    without one."""

    rank: int = 8
    alpha: float = 16.0  # the update is scaled by alpha / rank
    # On the adapter's input while training (PEFT's and torchtune's default is none): each
    # adapted projection then keeps a masked copy of its input for backward.
    dropout: float = 0.0
    targets: list[str] = field(default_factory=lambda: list(PROJECTIONS))

    @property
    def scale(self) -> float:
        return self.alpha / self.rank
