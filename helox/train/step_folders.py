"""The `step_N` folders of a run's checkpoint folder (what is inside them is
helox.train.checkpoint's), apart from torch so that launching a stage stays light."""

from __future__ import annotations

import os
import re
from pathlib import Path

STEP_DIR = re.compile(r"step_(\d+)")


def step_dirs(checkpoint_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """Every `step_N` folder, oldest first, complete or not."""
    root = Path(checkpoint_dir)
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = STEP_DIR.fullmatch(path.name)
        if match and path.is_dir():
            found.append((int(match.group(1)), path))
    return sorted(found)
