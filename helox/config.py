"""Typed configuration: `config.yaml` → JSON schema → one dataclass per section."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range; the message names the key."""


@dataclass
class CorpusConfig:
    raw_dir: str = ""
    stdlib_max_bytes: int = 8_000_000


@dataclass
class CleanConfig:
    parts: int = 4
    min_text_length: int = 200
    max_text_length: int = 1_000_000
    max_urls: int = 20
    unicode_form: str = "NFC"
    text_extensions: list[str] = field(default_factory=lambda: [".txt", ".md", ".rst"])
    code_extensions: list[str] = field(
        default_factory=lambda: [
            ".py",
            ".js",
            ".ts",
            ".c",
            ".h",
            ".cpp",
            ".hpp",
            ".cc",
            ".java",
            ".go",
            ".rs",
            ".sh",
        ]
    )
    jsonl_text_field: str = "text"


@dataclass
class DedupConfig:
    lowercase: bool = True


@dataclass
class TokenizerConfig:
    model_type: str = "bpe"
    vocab_size: int = 8000
    character_coverage: float = 0.9995
    max_train_bytes: int = 300_000_000
    max_sentence_bytes: int = 4096
    eval_docs: int = 200
    threads: int = 2


@dataclass
class ShardsConfig:
    train_split: float = 0.98
    val_split: float = 0.01
    test_split: float = 0.01


@dataclass
class ModelConfig:
    vocab_size: int | None = None
    hidden_size: int = 256
    num_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int | None = None
    intermediate_size: int | None = None
    max_position_embeddings: int = 512
    use_rms_norm: bool = True
    use_swiglu: bool = True
    use_rope_embeddings: bool = True
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    dropout: float = 0.0
    tie_word_embeddings: bool = True
    initializer_range: float = 0.02

    @classmethod
    def from_file(cls, path: str | Path) -> ModelConfig:
        return section_from_dict(cls, load_mapping(path), str(path))


@dataclass
class TrainingConfig:
    seq_len: int = 256
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    learning_rate: float = 3e-3
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    max_grad_norm: float = 1.0
    total_steps: int = 1000
    warmup_steps: int = 50
    eval_steps: int = 200
    eval_batches: int = 20
    save_steps: int = 200
    save_total_limit: int = 2
    log_steps: int = 10
    mixed_precision: str = "auto"
    gradient_checkpointing: bool = False
    device: str = "auto"
    compile: bool = False

    @classmethod
    def from_file(cls, path: str | Path) -> TrainingConfig:
        return section_from_dict(cls, load_mapping(path), str(path))


@dataclass
class SFTConfig(TrainingConfig):
    data: str = ""
    max_pairs: int = 4000
    max_response_chars: int = 2000
    val_fraction: float = 0.05


@dataclass
class TrackingConfig:
    enabled: bool = True
    uri: str = ""
    experiment: str = "helox"


def load_mapping(path: str | Path) -> dict[str, Any]:
    """Read a JSON or YAML file holding one mapping."""
    text = Path(path).read_text(encoding="utf-8")
    data = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: expected a mapping of keys to values, got {type(data).__name__}"
        )
    return data


def section_from_dict(cls: type[T], data: dict[str, Any] | None, where: str) -> T:
    """Build dataclass `cls` from `data`, naming `where.key` for an unknown key."""
    data = dict(data or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"unknown key {where}.{unknown[0]}; allowed keys: {', '.join(sorted(known))}"
        )
    return cls(**data)


def schema() -> dict[str, Any]:
    return yaml.safe_load(SCHEMA_PATH.read_text(encoding="utf-8"))


def unknown_key_errors(config: dict[str, Any]) -> list[str]:
    """Keys that no section knows, each named with the keys that are allowed there."""
    top = {f.name for f in dataclasses.fields(HeloxConfig)}
    messages = [
        f"config key {key}: unknown key (allowed keys: {', '.join(sorted(top))})"
        for key in sorted(set(config) - top)
    ]
    for name, section_cls in _SECTION_TYPES.items():
        section = config.get(name)
        if not isinstance(section, dict):
            continue
        known = {f.name for f in dataclasses.fields(section_cls)}
        messages += [
            f"config key {name}.{key}: unknown key (allowed keys: {', '.join(sorted(known))})"
            for key in sorted(set(section) - known)
        ]
    return messages


def config_errors(config: dict[str, Any]) -> list[str]:
    """Every problem in `config`, each naming its key and what is allowed."""
    import jsonschema

    messages = unknown_key_errors(config)
    validator = jsonschema.Draft202012Validator(schema())
    for error in sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path)):
        if error.validator in ("additionalProperties", "unevaluatedProperties"):
            if not messages:
                messages.append(f"config: {error.message}")
            continue
        key = ".".join(str(p) for p in error.absolute_path) or "<top level>"
        allowed = ""
        if error.validator == "enum":
            allowed = f" (allowed: {', '.join(map(repr, error.validator_value))})"
        elif error.validator in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
            allowed = f" ({error.validator} {error.validator_value})"
        messages.append(f"config key {key}: {error.message}{allowed}")
    messages.extend(split_errors(config))
    return messages


def split_errors(config: dict[str, Any]) -> list[str]:
    shards = config.get("shards") or {}
    ratios = [shards.get(k) for k in ("train_split", "val_split", "test_split")]
    if all(isinstance(r, int | float) for r in ratios) and abs(sum(ratios) - 1.0) > 1e-6:
        return [
            f"config key shards: train_split + val_split + test_split = {sum(ratios):g}, must be 1"
        ]
    return []


def validate_config(config: dict[str, Any]) -> None:
    """Raise ConfigError listing every problem in `config`, or return quietly."""
    errors = config_errors(config)
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(errors))


@dataclass
class HeloxConfig:
    """The whole `config.yaml`, typed."""

    seed: int = 1337
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    clean: CleanConfig = field(default_factory=CleanConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    shards: ShardsConfig = field(default_factory=ShardsConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pretrain: TrainingConfig = field(default_factory=TrainingConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    resources: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HeloxConfig:
        validate_config(data)
        sections = {}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                continue
            value = data[f.name]
            section_cls = _SECTION_TYPES.get(f.name)
            sections[f.name] = (
                section_from_dict(section_cls, value, f.name) if section_cls else value
            )
        return cls(**sections)

    @classmethod
    def from_file(cls, path: str | Path) -> HeloxConfig:
        return cls.from_dict(load_mapping(path))


_SECTION_TYPES: dict[str, type] = {
    "corpus": CorpusConfig,
    "clean": CleanConfig,
    "dedup": DedupConfig,
    "tokenizer": TokenizerConfig,
    "shards": ShardsConfig,
    "model": ModelConfig,
    "pretrain": TrainingConfig,
    "sft": SFTConfig,
    "tracking": TrackingConfig,
}
