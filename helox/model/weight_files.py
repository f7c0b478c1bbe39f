"""A model folder's safetensors files read only as far as their headers (an 8-byte length,
then JSON naming each tensor's dtype and shape), and whether the weights they hold fit the
memory they would be loaded into, checked before any weight is read."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from helox.common.config_files import load_mapping

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
PICKLED_PATTERNS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")
# Helox holds every weight in float32, to which these cast exactly (float64 rounds).
FLOAT_DTYPES = {"F64", "F32", "F16", "BF16"}
HELD_BYTES_PER_VALUE = 4
MEMINFO = Path("/proc/meminfo")


class WeightFileError(ValueError):
    """A folder's weights are missing, pickled only, or not readable safetensors."""


class ModelTooLargeError(MemoryError):
    """The weights would not fit the memory available where they are to be loaded."""


@dataclass(frozen=True)
class TensorEntry:
    """One tensor as a safetensors header describes it."""

    file: Path
    dtype: str
    shape: tuple[int, ...]

    @property
    def held_bytes(self) -> int:
        return math.prod(self.shape) * HELD_BYTES_PER_VALUE


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files of `folder`: the shards its index lists, or `model.safetensors`.
    Pickled weights (`pytorch_model.bin` and the like) are refused, never opened."""
    index = folder / INDEX_FILE
    if index.is_file():
        weight_map = load_mapping(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise WeightFileError(f"{index}: no weight_map of tensor names to files")
        files = [folder / name for name in sorted(set(weight_map.values()))]
        absent = [path.name for path in files if not path.is_file()]
        if absent:
            raise WeightFileError(f"{index} lists files the folder lacks: {', '.join(absent)}")
        return files
    if (folder / SINGLE_FILE).is_file():
        return [folder / SINGLE_FILE]
    pickled = sorted(path.name for pattern in PICKLED_PATTERNS for path in folder.glob(pattern))
    found = f"; it has only {', '.join(pickled)}" if pickled else ""
    raise WeightFileError(
        f"{folder}: no {SINGLE_FILE} (or {INDEX_FILE}){found}. Helox never loads pickled "
        "weights; convert them to safetensors first"
    )


def read_header(path: Path) -> dict[str, TensorEntry]:
    """The tensors `path` holds, from its header alone; a malformed header names the file."""
    size = path.stat().st_size
    with open(path, "rb") as file:
        length = int.from_bytes(file.read(8), "little")
        if size < 8 or length > size - 8:
            raise WeightFileError(f"{path}: not a safetensors file (its header is cut short)")
        try:
            header = json.loads(file.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise WeightFileError(f"{path}: unreadable safetensors header ({error})") from None
    if not isinstance(header, dict):
        raise WeightFileError(f"{path}: malformed safetensors header (not a mapping)")
    header.pop("__metadata__", None)
    try:
        return {
            name: TensorEntry(path, info["dtype"], tuple(info["shape"]))
            for name, info in header.items()
        }
    except (KeyError, TypeError) as error:
        raise WeightFileError(f"{path}: malformed safetensors header ({error!r})") from None


def folder_tensors(folder: Path) -> dict[str, TensorEntry]:
    """Every tensor of `folder`'s safetensors files, from their headers; a tensor in two
    files, or one not of a float type, is refused by name."""
    tensors: dict[str, TensorEntry] = {}
    for path in weight_files(folder):
        for name, entry in read_header(path).items():
            if name in tensors:
                raise WeightFileError(
                    f"{folder}: {name} is in both {tensors[name].file.name} and {path.name}"
                )
            if entry.dtype not in FLOAT_DTYPES:
                raise WeightFileError(
                    f"{path}: {name} is {entry.dtype} (Helox loads {sorted(FLOAT_DTYPES)} "
                    "weights; quantized checkpoints are not supported)"
                )
            tensors[name] = entry
    return tensors


def available_memory(device: torch.device) -> int | None:
    """Bytes free to hold weights: free device memory on CUDA, else MemAvailable from
    /proc/meminfo; None where the system does not say."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        lines = MEMINFO.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None


def size_text(num_bytes: int) -> str:
    """`num_bytes` exactly, and in GiB or MiB for a reader."""
    rounded = (
        f"{num_bytes / 2**30:.1f} GiB" if num_bytes >= 2**30 else f"{num_bytes / 2**20:.1f} MiB"
    )
    return f"{num_bytes:,} bytes ({rounded})"


def check_fits(
    folder: str | os.PathLike, tensors: Iterable[TensorEntry], device: str | torch.device
) -> None:
    """Refuse, before a weight is read, `tensors` that would not fit memory as float32: the
    CPU's, where the model is built, and the device's it then moves to."""
    needed = sum(entry.held_bytes for entry in tensors)
    device = torch.device(device)
    places = [torch.device("cpu")] + ([device] if device.type == "cuda" else [])
    for place in places:
        available = available_memory(place)
        if available is not None and needed > available:
            what = "free device memory" if place.type == "cuda" else "MemAvailable"
            raise ModelTooLargeError(
                f"{folder}: the model's weights need {size_text(needed)} as float32 "
                f"(estimated from the safetensors headers), and {place} has "
                f"{size_text(available)} available ({what}); load it where there is more memory"
            )
