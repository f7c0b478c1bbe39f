"""Logging set-up shared by the rules, the CLI and the tests."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from helox.common.progress import CLEAR_LINE

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(log_path: str | Path | None = None, level: int = logging.INFO) -> None:
    """Log to stderr, and also to `log_path` when given (a Snakemake rule's `log:`)."""
    console = logging.StreamHandler(sys.stderr)
    if sys.stderr.isatty():  # start each line by wiping a progress bar drawn there
        console.setFormatter(logging.Formatter(CLEAR_LINE + FORMAT))
    handlers: list[logging.Handler] = [console]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w", encoding="utf-8"))
    logging.basicConfig(level=level, format=FORMAT, handlers=handlers, force=True)
