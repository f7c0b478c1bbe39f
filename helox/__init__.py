"""Helox: raw text, code and JSONL to a pretrained and instruction-tuned language model."""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# The guide's names, imported on first use so that `import helox` stays fast.
_EXPORTS = {
    "TextCleaner": "helox.guide",
    "DataCollector": "helox.guide",
    "TokenizerTrainer": "helox.guide",
    "DatasetBuilder": "helox.guide",
    "save_dataset": "helox.guide",
    "PretrainingTrainer": "helox.guide",
    "DeviceManager": "helox.model.device",
    "ModelConfig": "helox.model.config",
    "TrainingConfig": "helox.train.config",
    "create_model_from_config": "helox.model.network",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'helox' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
