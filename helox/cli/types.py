"""Argument types of the `helox` command: each refuses a value the command cannot use, so
argparse names the argument, says what to pass and exits 2, with no traceback."""

from __future__ import annotations

import argparse
import math
from pathlib import Path


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} must be 0 or more")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"{value} must be a finite number, 0 or more")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{value} must be a finite number above 0")
    return value


def fraction(text: str) -> float:
    """A number in (0, 1], such as top-p or MFU."""
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{value} must be above 0 and at most 1")
    return value


def existing_file(text: str) -> str:
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    return text


def model_folder(text: str) -> str:
    """A folder holding what every final/ folder holds: weights, config and tokenizer."""
    from helox.model.folder import CONFIG_FILE, MODEL_FILE

    folder = Path(text)
    example = "a model folder such as results/pretrain/final or results/sft/final"
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: no such folder; pass {example}")
    missing = [name for name in (MODEL_FILE, CONFIG_FILE) if not (folder / name).is_file()]
    tokenizer_files = ("tokenizer.json", "tokenizer.model")
    if not any((folder / name).is_file() for name in tokenizer_files):
        missing.append(" or ".join(tokenizer_files))
    if missing:
        raise argparse.ArgumentTypeError(
            f"{text} is not a model folder: it has no {', '.join(missing)}; pass {example}"
        )
    return text


def hf_folder(text: str) -> str:
    """A Hugging Face model folder: one with its config.json."""
    folder = Path(text)
    if not (folder / "config.json").is_file():
        what = "not a Hugging Face model folder: it has no config.json"
        raise argparse.ArgumentTypeError(f"{text}: {what if folder.is_dir() else 'no such folder'}")
    return text


def shards_folder(text: str) -> str:
    """A folder the shards stage wrote, with its manifest."""
    folder = Path(text)
    if not (folder / "manifest.json").is_file():
        what = (
            "not a shards folder: it has no manifest.json" if folder.is_dir() else "no such folder"
        )
        raise argparse.ArgumentTypeError(
            f"{text}: {what}; pass the shards stage's folder, such as results/shards"
        )
    return text
