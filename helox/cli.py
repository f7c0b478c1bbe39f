"""The `helox` command: generate, chat, eval, humaneval, sft, dpo, import-hf, status, plan,
config."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from helox.cli_types import (
    existing_file,
    fraction,
    hf_folder,
    model_folder,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    shards_folder,
)
from helox.logs import setup_logging


def add_sampling_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-new-tokens", type=positive_int, default=128)
    parser.add_argument("--temperature", type=non_negative_float, default=0.8, help="0 = greedy")
    parser.add_argument("--top-k", type=non_negative_int, default=50, help="0 = off")
    parser.add_argument("--top-p", type=fraction, default=None, help="nucleus; default: off")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])


def sampling_from_args(args: argparse.Namespace):
    from helox.generate import SamplingConfig

    top_k = args.top_k or None
    return SamplingConfig(args.max_new_tokens, args.temperature, top_k, args.top_p, args.seed)


def cmd_generate(args: argparse.Namespace) -> int:
    from helox.generate import Generator, is_chat_model

    generator = Generator(args.folder, args.device)
    sampling = sampling_from_args(args)
    if is_chat_model(args.folder) and not args.raw:
        print(generator.reply([{"role": "user", "content": args.prompt}], sampling))
    else:
        print(generator.complete(args.prompt, sampling))
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from helox.generate import Generator, is_chat_model

    generator = Generator(args.folder, args.device)
    sampling = sampling_from_args(args)
    messages = [{"role": "system", "content": args.system}] if args.system else []
    if not is_chat_model(args.folder):
        print(
            f"note: {args.folder} was not fine-tuned for chat (SFT or DPO), so its answers "
            "need not follow the conversation; helox generate continues raw text",
            file=sys.stderr,
        )
    print("Chatting with", args.folder, "- an empty line or Ctrl-D ends.", file=sys.stderr)
    while True:
        try:
            text = input("you> ").strip()
        except EOFError:
            break
        if not text:
            break
        messages.append({"role": "user", "content": text})
        try:
            answer = generator.reply(messages, sampling)
        except ValueError as error:  # a message longer than the model sees: say so, go on
            print(f"helox: {error}", file=sys.stderr)
            messages.pop()
            continue
        messages.append({"role": "assistant", "content": answer})
        print(f"model> {answer}")
    return 0


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

    from helox.config import EvalConfig, load_config, section_from_dict
    from helox.eval.card import format_card
    from helox.eval.next_line import build_next_line_task
    from helox.eval.stage import run_evaluation

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
                Path(args.folder) / "tokenizer.model",
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

    from helox.config import HumanEvalConfig, load_config, section_from_dict
    from helox.eval.humaneval import run_canonical, run_humaneval

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


def cmd_status(args: argparse.Namespace) -> int:
    from helox.status import StatusError, format_status, status

    try:
        stages = status([arg for arg in args.snakemake_args if arg != "--"])
    except StatusError as error:
        print(f"helox status: {error}", file=sys.stderr)
        return 1
    print(format_status(stages))
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from helox.config import format_config, load_config

    print(format_config(load_config(args.config or ["config.yaml"])), end="")
    return 0


def stage_section(config_path: str | None, stage: str) -> dict:
    """Section `stage` of the config file at `config_path`, checked and completed (sft and
    dpo from pretrain first), or {} for the stage's defaults."""
    from helox.config import load_config, resolve_config

    return resolve_config(load_config([config_path]))[stage] if config_path else {}


def cmd_sft(args: argparse.Namespace) -> int:
    from helox.config import SFTConfig, TrackingConfig, section_from_dict
    from helox.sft import SFTJob, launch_sft

    config = section_from_dict(SFTConfig, stage_section(args.config, "sft"), "sft")
    job = SFTJob(
        pretrained_dir=args.pretrained_model,
        data_path=args.instruction_data,
        output_dir=args.output_dir,
        config=config,
        seed=args.seed,
        tracking=TrackingConfig(enabled=not args.no_tracking),
        tokenizer_path=args.tokenizer_model,
    )
    launch_sft(job)
    return 0


def cmd_import_hf(args: argparse.Namespace) -> int:
    from helox.import_hf import import_llama

    print(import_llama(args.source, args.destination))
    return 0


def cmd_dpo(args: argparse.Namespace) -> int:
    from helox.config import DPOConfig, TrackingConfig, section_from_dict
    from helox.dpo import DPOJob, launch_dpo

    config = section_from_dict(DPOConfig, stage_section(args.config, "dpo"), "dpo")
    job = DPOJob(
        sft_dir=args.sft_model,
        data_path=args.preference_data,
        output_dir=args.output_dir,
        config=config,
        seed=args.seed,
        tracking=TrackingConfig(enabled=not args.no_tracking),
    )
    launch_dpo(job)
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from helox.plan import format_plan, make_plan, write_preset

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
    if args.write:
        write_preset(plan, args.write)
        print(f"wrote {args.write}")
    return 0


def add_fine_tuning_arguments(parser: argparse.ArgumentParser, stage: str) -> None:
    """What `helox sft` and `helox dpo` both take: output, config, seed and tracking."""
    parser.add_argument("--output-dir", default=f"results/{stage}/final")
    parser.add_argument(
        "--config",
        type=existing_file,
        help=f"a config.yaml: `{stage}`, then `pretrain` for the rest",
    )
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--no-tracking", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="helox", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    generate = commands.add_parser("generate", help="sample text from a model folder")
    generate.add_argument(
        "folder", type=model_folder, help="a final/ folder, e.g. results/sft/final"
    )
    generate.add_argument("--prompt", required=True)
    generate.add_argument("--raw", action="store_true", help="no chat template for SFT models")
    add_sampling_arguments(generate)
    generate.set_defaults(func=cmd_generate)

    chat = commands.add_parser("chat", help="talk to an SFT model folder, turn by turn")
    chat.add_argument("folder", type=model_folder)
    chat.add_argument("--system", default="", help="an optional system message")
    add_sampling_arguments(chat)
    chat.set_defaults(func=cmd_chat)

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

    sft = commands.add_parser("sft", help="fine-tune a pretrained folder on instruction data")
    sft.add_argument(
        "--pretrained-model", required=True, type=model_folder, help="a pretrain final/ folder"
    )
    sft.add_argument(
        "--instruction-data",
        required=True,
        type=existing_file,
        help="instruction records: chat, ShareGPT, Alpaca or Dolly, as JSON lines, a JSON "
        "array or Parquet (README: SFT)",
    )
    sft.add_argument("--tokenizer-model", type=existing_file, help="defaults to the folder's own")
    add_fine_tuning_arguments(sft, "sft")
    sft.set_defaults(func=cmd_sft)

    dpo = commands.add_parser("dpo", help="preference-tune an SFT folder (DPO)")
    dpo.add_argument(
        "--sft-model", required=True, type=model_folder, help="an SFT final/ folder, the reference"
    )
    dpo.add_argument(
        "--preference-data",
        required=True,
        type=existing_file,
        help='preference records: {"prompt", "chosen", "rejected"}, TRL or UltraFeedback '
        "message lists or Anthropic HH transcripts (README: DPO)",
    )
    add_fine_tuning_arguments(dpo, "dpo")
    dpo.set_defaults(func=cmd_dpo)

    import_hf = commands.add_parser(
        "import-hf", help="a Hugging Face LlamaForCausalLM folder → a Helox final/ folder"
    )
    import_hf.add_argument(
        "source",
        type=hf_folder,
        help="a folder with config.json, *.safetensors and a SentencePiece tokenizer.model",
    )
    import_hf.add_argument("destination", help="the final/ folder to write")
    import_hf.set_defaults(func=cmd_import_hf)

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
    plan.add_argument(
        "--config",
        action="append",
        default=[],
        type=existing_file,
        help="config files, merged (default: config.yaml where there is one)",
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
    config.add_argument(
        "--config",
        action="append",
        default=[],
        type=existing_file,
        help="config files merged in order (default: config.yaml); snakemake reads config.yaml "
        "before any --configfile, so `--config config.yaml --config my.yaml` shows what "
        "`snakemake --configfile my.yaml` runs with",
    )
    config.set_defaults(func=cmd_config)
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
