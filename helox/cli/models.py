"""`helox generate` and `helox chat`: sample from a model folder."""

from __future__ import annotations

import argparse
import sys

from helox.cli.types import (
    fraction,
    model_folder,
    non_negative_float,
    non_negative_int,
    positive_int,
)


def add_sampling_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-new-tokens", type=positive_int, default=128)
    parser.add_argument("--temperature", type=non_negative_float, default=0.8, help="0 = greedy")
    parser.add_argument("--top-k", type=non_negative_int, default=50, help="0 = off")
    parser.add_argument("--top-p", type=fraction, default=None, help="nucleus; default: off")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])


def sampling_from_args(args: argparse.Namespace):
    from helox.model.generate import SamplingConfig

    top_k = args.top_k or None
    return SamplingConfig(args.max_new_tokens, args.temperature, top_k, args.top_p, args.seed)


def cmd_generate(args: argparse.Namespace) -> int:
    from helox.model.generate import Generator, is_chat_model

    generator = Generator(args.folder, args.device)
    sampling = sampling_from_args(args)
    if is_chat_model(args.folder) and not args.raw:
        print(generator.reply([{"role": "user", "content": args.prompt}], sampling))
    else:
        print(generator.complete(args.prompt, sampling))
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from helox.model.generate import Generator, is_chat_model

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


def add_commands(commands: argparse._SubParsersAction) -> None:
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
