"""`helox sft`, `helox dpo` and `helox import-hf`: run a training stage outside Snakemake, or
bring a Hugging Face model in."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from helox.cli.types import (
    existing_file,
    hf_folder,
    model_folder,
)

if TYPE_CHECKING:
    from helox.train.config import TrainingConfig

# What `helox sft` and `helox dpo` read as their data.
INSTRUCTIONS = (
    "instruction records: chat, ShareGPT, Alpaca or Dolly, as JSON lines, a JSON array or "
    "Parquet (README: SFT)"
)
PREFERENCES = (
    'preference records: {"prompt", "chosen", "rejected"}, TRL or UltraFeedback message lists '
    "or Anthropic HH transcripts (README: DPO)"
)


def stage_config(config_class: type[TrainingConfig], config_path: str | None) -> TrainingConfig:
    """`config_class`'s section of the config file at `config_path`, checked and completed (sft
    and dpo from pretrain first), or the section's defaults without a file."""
    from helox.common.config_files import section_from_dict
    from helox.pipeline.config import load_config, resolve_config

    stage = config_class.SECTION
    section = resolve_config(load_config([config_path]))[stage] if config_path else {}
    return section_from_dict(config_class, section, stage)


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


def fine_tuning_fields(
    args: argparse.Namespace, config_class: type[TrainingConfig]
) -> dict[str, Any]:
    """The job fields that `add_fine_tuning_arguments` gives `helox sft` and `helox dpo`: the
    output folder, the stage's config, the seed and the tracking."""
    from helox.train.tracking import TrackingConfig

    return {
        "output_dir": args.output_dir,
        "config": stage_config(config_class, args.config),
        "seed": args.seed,
        "tracking": TrackingConfig(enabled=not args.no_tracking),
    }


def cmd_sft(args: argparse.Namespace) -> int:
    from helox.tune.config import SFTConfig
    from helox.tune.sft import SFTJob, launch_sft

    job = SFTJob(
        pretrained_dir=args.pretrained_model,
        data_path=args.instruction_data,
        tokenizer_path=args.tokenizer_model,
        **fine_tuning_fields(args, SFTConfig),
    )
    launch_sft(job)
    return 0


def cmd_dpo(args: argparse.Namespace) -> int:
    from helox.tune.config import DPOConfig
    from helox.tune.dpo import DPOJob, launch_dpo

    job = DPOJob(
        sft_dir=args.sft_model,
        data_path=args.preference_data,
        **fine_tuning_fields(args, DPOConfig),
    )
    launch_dpo(job)
    return 0


def cmd_import_hf(args: argparse.Namespace) -> int:
    from helox.model.import_hf import import_hf_folder

    print(import_hf_folder(args.source, args.destination))
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    sft = commands.add_parser("sft", help="fine-tune a pretrained folder on instruction data")
    sft.add_argument(
        "--pretrained-model", required=True, type=model_folder, help="a pretrain final/ folder"
    )
    sft.add_argument("--instruction-data", required=True, type=existing_file, help=INSTRUCTIONS)
    sft.add_argument(
        "--tokenizer-model",
        type=existing_file,
        help="Helox's SentencePiece model; defaults to the folder's own tokenizer",
    )
    add_fine_tuning_arguments(sft, "sft")
    sft.set_defaults(func=cmd_sft)

    dpo = commands.add_parser("dpo", help="preference-tune an SFT folder (DPO)")
    dpo.add_argument(
        "--sft-model", required=True, type=model_folder, help="an SFT final/ folder, the reference"
    )
    dpo.add_argument("--preference-data", required=True, type=existing_file, help=PREFERENCES)
    add_fine_tuning_arguments(dpo, "dpo")
    dpo.set_defaults(func=cmd_dpo)

    import_hf = commands.add_parser(
        "import-hf",
        help="a Hugging Face Llama, Mistral, Qwen2 or Qwen3 folder → a Helox final/ folder",
    )
    import_hf.add_argument(
        "source",
        type=hf_folder,
        help="a folder with config.json, *.safetensors and its tokenizer (tokenizer.json or "
        "tokenizer.model, with their configs and chat template)",
    )
    import_hf.add_argument("destination", help="the final/ folder to write")
    import_hf.set_defaults(func=cmd_import_hf)
