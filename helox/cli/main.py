"""The `helox` command: generate, chat, eval, humaneval, sft, dpo, import-hf, status, plan,
config."""

from __future__ import annotations

import argparse
import sys

from helox.cli import evaluate, models, pipeline, stages
from helox.common.logs import setup_logging


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="helox", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for group in (models, evaluate, stages, pipeline):
        group.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"helox: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
