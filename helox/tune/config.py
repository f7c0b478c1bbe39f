"""The fine-tuning stages' sections, `sft` and `dpo`: pretraining's training keys and those
of tuning a trained model on a data file (apart from torch, so that reading a configuration
stays light)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from helox.common.config_files import ConfigError, build_sections
from helox.model.lora_config import LoRAConfig
from helox.tokens.chat_setup import PreparedChat, prepare_chat
from helox.tokens.vocab import load_tokenizer
from helox.train.config import TrainingConfig


@dataclass
class TuningConfig(TrainingConfig):
    """A stage that tunes a trained model on a data file: SFT, DPO."""

    data: str = ""  # the stage's data file; "" = derived from the standard library
    max_pairs: int = 4000  # derived pairs
    val_fraction: float = 0.05
    packing: bool = True  # several sequences per row; attention never crosses them
    # A Jinja chat template file; "" = the model folder's own, else Helox's (its markers
    # then added to the tokenizer, helox.tokens.chat_setup).
    chat_template: str = ""
    # Train low-rank adapters on the frozen model (helox.model.lora); None = every weight.
    lora: LoRAConfig | None = None

    def __post_init__(self) -> None:
        build_sections(self, self.SECTION)
        if self.lora is not None and self.float8:
            raise ConfigError(
                f"config key {self.SECTION}.float8: float8 matmuls replace the projections "
                f"that {self.SECTION}.lora adapts; set float8: false for a LoRA stage"
            )

    def prepare_chat(self, tokenizer_source, folder: Path) -> PreparedChat:
        """The tokenizer and chat format this stage trains the model of `folder` with."""
        key = f"{self.SECTION}.chat_template"
        return prepare_chat(load_tokenizer(tokenizer_source), self.chat_template, key, str(folder))


@dataclass
class SFTConfig(TuningConfig):
    """Fine-tuning on instruction data: `data` holds {"instruction", "response"} lines."""

    SECTION: ClassVar[str] = "sft"

    max_response_chars: int = 2000


@dataclass
class DPOConfig(TuningConfig):
    """Preference tuning of the SFT model, which stays frozen as the reference: `data` holds
    {"prompt" | "messages", "chosen", "rejected"} lines."""

    SECTION: ClassVar[str] = "dpo"

    max_pairs: int = 1000  # derived pairs
    beta: float = 0.1  # strength of the pull towards the reference
    label_smoothing: float = 0.0  # conservative DPO: the share of preferences assumed flipped
