"""The whole configuration: its sections, each a dataclass beside the code that owns it,
composed, completed with their defaults and checked once.

A configuration states only what it changes: `resolve_config` completes it from the
dataclasses (the fine-tuning stages from pretraining first), and `helox config` prints the
result. The schema (helox.common.schema) checks each key; helox.pipeline.checks the rules
across keys.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from helox.common.config_files import ConfigError, merged_config
from helox.common.schema import coerce_values, schema_errors
from helox.data.clean_config import CleanConfig
from helox.data.corpus import CorpusConfig
from helox.data.dedup import DedupConfig
from helox.eval.config import EvalConfig
from helox.model.config import ModelConfig
from helox.model.lora_config import LoRAConfig
from helox.pipeline.checks import cross_key_errors
from helox.tokens.shards import ShardsConfig
from helox.tokens.tokenizer import TokenizerConfig
from helox.train.config import TrainingConfig
from helox.train.tracking import TrackingConfig
from helox.tune.config import DPOConfig, SFTConfig

DEFAULT_SEED = 1337
# Each section of a configuration and the dataclass that holds its keys' defaults.
SECTIONS: dict[str, type] = {
    "corpus": CorpusConfig,
    "clean": CleanConfig,
    "dedup": DedupConfig,
    "tokenizer": TokenizerConfig,
    "shards": ShardsConfig,
    "model": ModelConfig,
    "pretrain": TrainingConfig,
    "sft": SFTConfig,
    "dpo": DPOConfig,
    "eval": EvalConfig,
    "tracking": TrackingConfig,
}
# `sft:` and `dpo:` state what differs from `pretrain:` and take its other training keys,
# but for where a stage starts and how it is launched, which stay each stage's own.
FINE_TUNING_STAGES = ("sft", "dpo")
NOT_INHERITED = ("init_from", "nproc", "nodes", "rendezvous_timeout", "fsdp")
# Keys that hold a section which is off (null) unless a config states it; stated, its other
# keys take their defaults. Each fine-tuning stage's adapters are its own: `lora` is neither
# pretraining's (the schema refuses it there) nor passed from one stage to the next.
OPTIONAL_SECTIONS = {(stage, "lora"): LoRAConfig for stage in FINE_TUNING_STAGES}


def section_defaults(cls: type) -> dict[str, Any]:
    """Every key of section dataclass `cls` with its default (lists and mappings, as YAML)."""
    return dataclasses.asdict(cls())


def fine_tuning_defaults(pretrain: dict[str, Any], stage: str) -> dict[str, Any]:
    """The keys fine-tuning `stage` takes where its section is silent: `pretrain`'s training
    keys but NOT_INHERITED, then the defaults of its own keys and of NOT_INHERITED."""
    defaults = section_defaults(SECTIONS[stage])
    training = {f.name for f in dataclasses.fields(TrainingConfig)}
    inherited = {key: value for key, value in pretrain.items() if key not in NOT_INHERITED}
    own = {key: value for key, value in defaults.items() if key not in training}
    return inherited | own | {key: defaults[key] for key in NOT_INHERITED}


def default_config(config: dict[str, Any]) -> dict[str, Any]:
    """The value each key takes where `config` leaves it out: its dataclass's default, but
    for the fine-tuning stages' training keys, which are `config`'s pretraining ones."""
    defaults = {"seed": DEFAULT_SEED}
    defaults |= {name: section_defaults(cls) for name, cls in SECTIONS.items()}
    pretrain = completed(defaults["pretrain"], config.get("pretrain", {}))
    for stage in FINE_TUNING_STAGES:
        defaults[stage] = fine_tuning_defaults(_mapping(pretrain), stage)
    for (section, key), cls in OPTIONAL_SECTIONS.items():
        if isinstance(_mapping(config.get(section)).get(key), dict):
            defaults[section][key] = section_defaults(cls)
    return defaults


def resolve_config(config: dict[str, Any]) -> dict[str, Any]:
    """`config` with every key it leaves out set as default_config says: what the rules read."""
    return completed(default_config(config), config)


def completed(defaults: Any, stated: Any) -> Any:
    """`stated` with each mapping key it leaves out, at any depth, taken from `defaults`;
    keys `defaults` lacks stay, and a value that is not a mapping stays as stated."""
    if not isinstance(defaults, dict) or not isinstance(stated, dict):
        return copy.deepcopy(stated)
    filled = {
        key: completed(default, stated[key]) if key in stated else copy.deepcopy(default)
        for key, default in defaults.items()
    }
    return filled | {
        key: copy.deepcopy(value) for key, value in stated.items() if key not in filled
    }


FORMAT_HEADER = """\
# Every key of the configuration with its value. `# default: X` follows a value that is not
# the one the key takes where no config file sets it; sft's and dpo's training keys take
# pretrain's values there.
"""


def format_config(config: dict[str, Any]) -> str:
    """`config` completed, as YAML: every key with its value, and where that is not the
    default, the default in a trailing `# default:` comment."""
    lines = _yaml_lines(resolve_config(config), default_config(config), "")
    return FORMAT_HEADER + "\n".join(lines) + "\n"


def _yaml_lines(values: dict[str, Any], defaults: dict[str, Any], indent: str) -> Iterator[str]:
    for key, value in values.items():
        default = defaults.get(key)
        if isinstance(value, dict) and value:
            yield f"{indent}{key}:"
            yield from _yaml_lines(value, _mapping(default), indent + "  ")
        elif key in defaults and default != value:
            yield f"{indent}{key}: {_flow(value)}  # default: {_flow(default)}"
        else:
            yield f"{indent}{key}: {_flow(value)}"


def _flow(value: Any) -> str:
    """`value` as one line of YAML."""
    return yaml.safe_dump([value], default_flow_style=True, width=1 << 30).strip()[1:-1]


def _mapping(value: Any) -> dict[str, Any]:
    """`value` if it is a mapping, else an empty one (the schema reports its type)."""
    return value if isinstance(value, dict) else {}


def config_errors(config: dict[str, Any]) -> list[str]:
    """Every problem in `config`, each naming its key and what is allowed: the schema's, then
    the rules across keys, with the keys `config` leaves out at their defaults."""
    return schema_errors(config) + cross_key_errors(resolve_config(config))


def validate_config(config: dict[str, Any]) -> None:
    """Raise ConfigError listing every problem in `config`, or return quietly."""
    errors = config_errors(config)
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(errors))


def load_config(paths: Sequence[str | Path]) -> dict[str, Any]:
    """The config files `paths` merged as `--configfile` merges them, numbers written as
    text read as numbers and empty sections as {} (coerce_values), and checked: what the CLI
    reads; the rules get the same from common.smk."""
    config = merged_config(list(paths))
    coerce_values(config)
    validate_config(config)
    return config
