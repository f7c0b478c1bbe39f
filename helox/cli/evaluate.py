"""`helox eval` and `helox humaneval`: score a model folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from helox.cli.types import (
    existing_file,
    fraction,
    model_folder,
    non_negative_float,
    positive_float,
    positive_int,
    shards_folder,
)


def cmd_eval(args: argparse.Namespace) -> int:
    if args.card:
        from helox.eval.card import format_card, read_results

        print(format_card(read_results(args.card)))
        return 0
    if not args.folder or not args.shards:
        raise ValueError("helox eval needs a model folder and --shards (or --card FILE...)")
    if args.suite:
        return eval_suite(args)
    from helox.eval.bpb import evaluate_folder

    result = evaluate_folder(
        args.folder,
        args.shards,
        split=args.split,
        seq_len=args.seq_len,
        batch_size=args.batch_size,
        max_batches=args.max_batches,
        device=args.device,
    )
    print(json.dumps(result, indent=2))
    return 0


def eval_suite(args: argparse.Namespace) -> int:
    """The evaluate stage on one folder: bits per byte, HumanEval and tasks, then the card."""
    import dataclasses
    import tempfile

    from helox.common.config_files import section_from_dict
    from helox.eval.card import format_card
    from helox.eval.config import EvalConfig
    from helox.eval.next_line import build_next_line_task
    from helox.eval.stage import run_evaluation
    from helox.pipeline.config import load_config

    overrides = load_config([args.config]).get("eval", {}) if args.config else {}
    config = dataclasses.replace(
        section_from_dict(EvalConfig, overrides, "eval"), device=args.device
    )
    task_paths = {task.name: task.path for task in config.tasks}
    for spec in args.task:
        name, separator, path = spec.partition("=")
        if not separator or not name or not path:
            raise ValueError(f"--task {spec!r}: expected NAME=PATH")
        task_paths[name] = path
    stage = args.stage or Path(args.folder).resolve().parent.name
    with tempfile.TemporaryDirectory() as scratch:
        if config.next_line.enabled:
            task_paths["next_line"] = str(Path(scratch) / "next_line.jsonl")
            build_next_line_task(
                Path(args.shards) / "manifest.json",
                args.folder,
                task_paths["next_line"],
                config.next_line,
                args.seed,
            )
        output = args.output or str(Path(scratch) / f"{stage}.json")
        result = run_evaluation(
            args.folder, stage, args.shards, task_paths, config, args.seed, output, args.seq_len
        )
    print(format_card([result]))
    print(json.dumps(result, indent=2))
    return 0


def cmd_humaneval(args: argparse.Namespace) -> int:
    import dataclasses

    from helox.common.config_files import section_from_dict
    from helox.eval.config import HumanEvalConfig
    from helox.eval.humaneval import run_canonical, run_humaneval
    from helox.pipeline.config import load_config

    section = load_config([args.config]).get("eval", {}).get("humaneval") if args.config else {}
    config = section_from_dict(HumanEvalConfig, section, "eval.humaneval")
    overrides = {
        name: getattr(args, name)
        for name in ("samples", "pass_at", "temperature", "top_p", "max_new_tokens", "limit")
        + ("timeout_s", "memory_mb", "workers")
        if getattr(args, name) is not None
    }
    config = dataclasses.replace(config, **overrides)
    if args.canonical:
        result = run_canonical(config)
        print(json.dumps(result, indent=2))
        print(f"pass@1 {result['pass@1']}")
        return 0 if result["pass@1"] == 1.0 else 1
    if not args.folder:
        raise ValueError("helox humaneval needs a model folder (or --canonical)")
    print(json.dumps(run_humaneval(args.folder, config, args.device, args.seed), indent=2))
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser(
        "eval",
        help="loss, perplexity and bits per byte as JSON; --suite for the whole eval card",
    )
    evaluate.add_argument("folder", nargs="?", type=model_folder, help="a final/ folder")
    evaluate.add_argument("--shards", type=shards_folder, help="a shards folder with manifest.json")
    evaluate.add_argument("--split", default="val", choices=["train", "val", "test"])
    evaluate.add_argument("--seq-len", type=positive_int, help="default: as trained")
    evaluate.add_argument("--batch-size", type=positive_int, default=8)
    evaluate.add_argument("--max-batches", type=positive_int, help="default: the whole split")
    evaluate.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    evaluate.add_argument(
        "--suite",
        action="store_true",
        help="run the evaluate stage: bits per byte on val and test, HumanEval, the next-line "
        "task and the config's tasks; print the card and the JSON",
    )
    evaluate.add_argument("--config", type=existing_file, help="a config.yaml whose `eval` applies")
    evaluate.add_argument(
        "--task", action="append", default=[], help="NAME=PATH of a multiple-choice JSONL task"
    )
    evaluate.add_argument("--stage", default=None, help="the card's column name")
    evaluate.add_argument("--output", default=None, help="also write the suite's JSON here")
    evaluate.add_argument("--seed", type=int, default=1337)
    evaluate.add_argument(
        "--card",
        nargs="+",
        type=existing_file,
        metavar="JSON",
        help="print the card of evaluate-stage JSON files",
    )
    evaluate.set_defaults(func=cmd_eval)

    humaneval = commands.add_parser(
        "humaneval", help="HumanEval pass@k of a model folder, its code run in a sandbox"
    )
    humaneval.add_argument("folder", nargs="?", type=model_folder, help="a final/ folder")
    humaneval.add_argument(
        "--canonical",
        action="store_true",
        help="check the dataset's own solutions instead; the last line is `pass@1 <value>`",
    )
    humaneval.add_argument(
        "--config", type=existing_file, help="a config.yaml: eval.humaneval applies"
    )
    humaneval.add_argument("--samples", type=positive_int, help="completions per problem")
    humaneval.add_argument("--pass-at", type=positive_int, nargs="+", metavar="K")
    humaneval.add_argument("--temperature", type=non_negative_float, help="0 = greedy")
    humaneval.add_argument("--top-p", type=fraction)
    humaneval.add_argument("--max-new-tokens", type=positive_int)
    humaneval.add_argument("--limit", type=positive_int, help="the first N problems")
    humaneval.add_argument("--timeout-s", type=positive_float, help="per program")
    humaneval.add_argument("--memory-mb", type=positive_int, help="per program")
    humaneval.add_argument("--workers", type=positive_int, help="programs run at once")
    humaneval.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    humaneval.add_argument("--seed", type=int, default=1337)
    humaneval.set_defaults(func=cmd_humaneval)
