"""The `helox` command: generate, chat, eval and the guide's fine-tuning script."""

from __future__ import annotations

import argparse
import json
import sys

from helox.logs import setup_logging


def add_sampling_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    parser.add_argument("--top-k", type=int, default=50)
    parser.add_argument("--top-p", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])


def sampling_from_args(args: argparse.Namespace):
    from helox.generate import SamplingConfig

    return SamplingConfig(args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.seed)


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
    from helox.generate import Generator

    generator = Generator(args.folder, args.device)
    sampling = sampling_from_args(args)
    messages = [{"role": "system", "content": args.system}] if args.system else []
    print("Chatting with", args.folder, "- an empty line or Ctrl-D ends.", file=sys.stderr)
    while True:
        try:
            text = input("you> ").strip()
        except EOFError:
            break
        if not text:
            break
        messages.append({"role": "user", "content": text})
        answer = generator.reply(messages, sampling)
        messages.append({"role": "assistant", "content": answer})
        print(f"model> {answer}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from helox.train.evaluate import evaluate_folder

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


def cmd_status(args: argparse.Namespace) -> int:
    from helox.status import format_status, status

    print(format_status(status([arg for arg in args.snakemake_args if arg != "--"])))
    return 0


def cmd_sft(args: argparse.Namespace) -> int:
    from helox.config import SFTConfig, TrackingConfig, load_mapping, section_from_dict
    from helox.sft import run_sft

    overrides = load_mapping(args.config).get("sft", {}) if args.config else {}
    config = section_from_dict(SFTConfig, overrides, "sft")
    run_sft(
        pretrained_dir=args.pretrained_model,
        data_path=args.instruction_data,
        output_dir=args.output_dir,
        config=config,
        seed=args.seed,
        tracking=TrackingConfig(enabled=not args.no_tracking),
        tokenizer_path=args.tokenizer_model,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="helox", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    generate = commands.add_parser("generate", help="sample text from a model folder")
    generate.add_argument("folder", help="a final/ folder, e.g. results/sft/final")
    generate.add_argument("--prompt", required=True)
    generate.add_argument("--raw", action="store_true", help="no chat template for SFT models")
    add_sampling_arguments(generate)
    generate.set_defaults(func=cmd_generate)

    chat = commands.add_parser("chat", help="talk to an SFT model folder, turn by turn")
    chat.add_argument("folder")
    chat.add_argument("--system", default="", help="an optional system message")
    add_sampling_arguments(chat)
    chat.set_defaults(func=cmd_chat)

    evaluate = commands.add_parser("eval", help="loss, perplexity and bits per byte as JSON")
    evaluate.add_argument("folder", help="a final/ folder")
    evaluate.add_argument("--shards", required=True, help="a shards folder with manifest.json")
    evaluate.add_argument("--split", default="val", choices=["train", "val", "test"])
    evaluate.add_argument("--seq-len", type=int, default=None, help="default: as trained")
    evaluate.add_argument("--batch-size", type=int, default=8)
    evaluate.add_argument("--max-batches", type=int, default=None, help="default: the whole split")
    evaluate.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    evaluate.set_defaults(func=cmd_eval)

    sft = commands.add_parser("sft", help="fine-tune a pretrained folder on instruction data")
    sft.add_argument("--pretrained-model", required=True, help="a pretrain final/ folder")
    sft.add_argument("--instruction-data", required=True, help="JSONL of instruction pairs")
    sft.add_argument("--tokenizer-model", default=None, help="defaults to the folder's own")
    sft.add_argument("--output-dir", default="results/sft/final")
    sft.add_argument("--config", default=None, help="a config.yaml whose `sft` section applies")
    sft.add_argument("--seed", type=int, default=1337)
    sft.add_argument("--no-tracking", action="store_true")
    sft.set_defaults(func=cmd_sft)

    status = commands.add_parser(
        "status", help="which stages are up to date and which would rerun, and why"
    )
    status.add_argument(
        "snakemake_args",
        nargs=argparse.REMAINDER,
        help="targets, then after -- any snakemake option (--configfile, --directory, ...)",
    )
    status.set_defaults(func=cmd_status)
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
