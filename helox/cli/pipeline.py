"""`helox status`, `helox plan` and `helox config`: the pipeline's state, its sizing and its
configuration."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from helox.cli.types import (
    existing_file,
    fraction,
    positive_float,
    positive_int,
)


def cmd_status(args: argparse.Namespace) -> int:
    from helox.pipeline.status import StatusError, format_status, status

    try:
        stages = status([arg for arg in args.snakemake_args if arg != "--"])
    except StatusError as error:
        print(f"helox status: {error}", file=sys.stderr)
        return 1
    print(format_status(stages))
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from helox.pipeline.config import format_config, load_config

    print(format_config(load_config(args.config or ["config.yaml"])), end="")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from helox.pipeline.config import load_config
    from helox.pipeline.plan import format_plan, make_plan, write_preset
    from helox.pipeline.tuning_plan import format_tuning_memory

    sizing = (
        "hours",
        "depth",
        "seq_len",
        "vocab_size",
        "tokens_per_param",
        "mfu",
        "nproc",
        "nodes",
    )
    chosen = {name: getattr(args, name) for name in sizing if getattr(args, name) is not None}
    config_paths = args.config or [path for path in ["config.yaml"] if Path(path).is_file()]
    plan = make_plan(config_paths, args.device, **chosen)
    print(format_plan(plan))
    if args.hours is None and args.depth is None:  # the config as written: its fine-tuning too
        print("\n".join(format_tuning_memory(load_config(config_paths), args.device)))
    if args.write:
        write_preset(plan, args.write)
        print(f"wrote {args.write}")
    return 0


def add_config_files_argument(parser: argparse.ArgumentParser, description: str) -> None:
    """`--config FILE`, given as often as there are files to merge."""
    parser.add_argument(
        "--config", action="append", default=[], type=existing_file, help=description
    )


def add_commands(commands: argparse._SubParsersAction) -> None:
    status = commands.add_parser(
        "status", help="which stages are up to date and which would rerun, and why"
    )
    status.add_argument(
        "snakemake_args",
        nargs=argparse.REMAINDER,
        help="targets, then after -- any snakemake option (--configfile, --directory, ...)",
    )
    status.set_defaults(func=cmd_status)

    plan = commands.add_parser(
        "plan", help="parameters, tokens, steps, memory and hours of a config or a budget"
    )
    add_config_files_argument(
        plan, "config files, merged (default: config.yaml where there is one)"
    )
    plan.add_argument(
        "--device", default="h100", type=str.lower, help="rtx4090, a100-40gb, a100-80gb, h100"
    )
    sizing = plan.add_mutually_exclusive_group()
    sizing.add_argument("--hours", type=positive_float, help="size the model to this budget")
    sizing.add_argument("--depth", type=positive_int, help="size the model by its number of layers")
    plan.add_argument("--seq-len", type=positive_int, help="with --hours or --depth (default 2048)")
    plan.add_argument(
        "--vocab-size", type=positive_int, help="with --hours or --depth (default 32768)"
    )
    plan.add_argument("--tokens-per-param", type=positive_float, help="default 20 (Chinchilla)")
    plan.add_argument("--mfu", type=fraction, help="assumed for the hours (default 0.35)")
    plan.add_argument(
        "--nproc", type=positive_int, help="GPUs on each node (default: the config's pretrain)"
    )
    plan.add_argument("--nodes", type=positive_int, help="nodes (default: the config's pretrain)")
    plan.add_argument("--write", default=None, help="write the plan as a --configfile overlay")
    plan.set_defaults(func=cmd_plan)

    config = commands.add_parser(
        "config", help="every key of a configuration with its value, and the default if it differs"
    )
    add_config_files_argument(
        config,
        "config files merged in order (default: config.yaml); snakemake reads config.yaml "
        "before any --configfile, so `--config config.yaml --config my.yaml` shows what "
        "`snakemake --configfile my.yaml` runs with",
    )
    config.set_defaults(func=cmd_config)
