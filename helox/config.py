"""Typed configuration: `config.yaml` → JSON schema → one dataclass per section."""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")
# Schema rules whose error is reported with the limit: `(minimum 1)`, `(maxItems 2)`.
LIMIT_RULES = (
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
)

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range; the message names the key."""


# The kinds of text a source may declare ("" = detect per document); see helox.data.kinds.
SOURCE_KINDS = ("", "web", "prose", "docs", "code")


@dataclass
class SourceConfig:
    """One source of a mixture: a raw folder, its share of the training tokens, its kind."""

    name: str = ""
    path: str = ""
    # The source's share of the train split's tokens, relative to the other sources' weights.
    weight: float = 1.0
    # web, prose, docs or code for every document of the source; "" detects it per document.
    kind: str = ""

    def __post_init__(self) -> None:
        if self.kind not in SOURCE_KINDS:
            raise ConfigError(
                f"corpus source {self.name!r}: kind {self.kind!r} is not one of "
                f"{', '.join(map(repr, SOURCE_KINDS))}"
            )
        if not self.weight > 0:
            raise ConfigError(f"corpus source {self.name!r}: weight {self.weight} must be > 0")


@dataclass
class CorpusConfig:
    raw_dir: str = ""
    stdlib_max_bytes: int = 8_000_000
    sources: list[SourceConfig] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sources = [
            section_from_dict(SourceConfig, source, f"corpus.sources.{index}")
            if isinstance(source, dict)
            else source
            for index, source in enumerate(self.sources)
        ]


@dataclass
class GopherRepetitionConfig:
    """Gopher's repetition rules (Rae et al. 2021, table A1): prose that repeats itself."""

    enabled: bool = True
    kinds: list[str] = field(default_factory=lambda: ["web"])
    max_duplicate_line_fraction: float = 0.30
    max_duplicate_line_char_fraction: float = 0.20
    max_duplicate_paragraph_fraction: float = 0.30
    max_duplicate_paragraph_char_fraction: float = 0.20
    # (n, limit): the most frequent word n-gram may cover at most `limit` of the characters.
    max_top_ngram_char_fractions: list[tuple[int, float]] = field(
        default_factory=lambda: [(2, 0.20), (3, 0.18), (4, 0.16)]
    )
    # (n, limit): repeated word n-grams together may cover at most `limit` of the characters.
    max_duplicate_ngram_char_fractions: list[tuple[int, float]] = field(
        default_factory=lambda: [(5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10)]
    )


@dataclass
class GopherQualityConfig:
    """Gopher's quality rules (Rae et al. 2021): length, word shape, symbols, stop words."""

    enabled: bool = True
    kinds: list[str] = field(default_factory=lambda: ["web"])
    min_words: int = 50
    max_words: int = 100_000
    min_mean_word_length: float = 3.0
    max_mean_word_length: float = 10.0
    max_symbol_word_ratio: float = 0.1
    max_bullet_line_fraction: float = 0.9
    max_ellipsis_line_fraction: float = 0.3
    min_alphabetic_word_fraction: float = 0.8
    min_stop_words: int = 2
    stop_words: list[str] = field(
        default_factory=lambda: ["the", "be", "to", "of", "and", "that", "have", "with"]
    )


@dataclass
class C4Config:
    """C4's line and page rules (Raffel et al. 2020, with its TFDS reference values)."""

    enabled: bool = True
    kinds: list[str] = field(default_factory=lambda: ["web"])
    drop_lines_without_terminal_punctuation: bool = True
    min_words_per_line: int = 5
    max_word_length: int = 1000
    min_sentences: int = 3
    remove_citations: bool = True
    drop_javascript_lines: bool = True
    drop_policy_lines: bool = True
    drop_lorem_ipsum: bool = True
    drop_curly_brackets: bool = True


@dataclass
class FineWebConfig:
    """FineWeb's own line rules (Penedo et al. 2024)."""

    enabled: bool = True
    kinds: list[str] = field(default_factory=lambda: ["web"])
    min_terminal_punctuation_line_fraction: float = 0.12
    max_short_line_fraction: float = 0.67
    short_line_length: int = 30
    max_duplicate_line_char_fraction: float = 0.01
    max_newlines_per_word: float = 0.3


@dataclass
class ParagraphQualityConfig:
    """Hard-wrapped text (books, documentation) judged on re-flowed paragraphs, never on lines."""

    enabled: bool = True
    kinds: list[str] = field(default_factory=lambda: ["prose", "docs"])
    min_words: int = 50
    min_mean_word_length: float = 3.0
    max_mean_word_length: float = 10.0
    min_alphabetic_word_fraction: float = 0.6
    min_stop_words: int = 2
    stop_words: list[str] = field(
        default_factory=lambda: ["the", "be", "to", "of", "and", "that", "have", "with"]
    )
    max_duplicate_paragraph_fraction: float = 0.30
    max_duplicate_paragraph_char_fraction: float = 0.20
    # Paragraphs of at most this many characters (headings, speaker names) never count as repeats.
    min_repeated_paragraph_chars: int = 40


@dataclass
class CodeSizeConfig:
    enabled: bool = True
    max_bytes: int = 1_000_000
    max_lines: int = 100_000


@dataclass
class CodeLinesConfig:
    """Codex / The Stack: longest line and mean line length, which catch minified files."""

    enabled: bool = True
    max_line_length: int = 1000
    max_mean_line_length: float = 100.0


@dataclass
class CodeAlphanumericConfig:
    enabled: bool = True
    min_fraction: float = 0.25


@dataclass
class CodeAutogeneratedConfig:
    """Markers of generated code, looked for (case-insensitively) in a file's first lines."""

    enabled: bool = True
    header_lines: int = 5
    markers: list[str] = field(
        default_factory=lambda: [
            "auto-generated",
            "autogenerated",
            "automatically generated",
            "generated automatically",
            "this file is generated",
            "this file was generated",
            "code generated by",
            "do not edit",
        ]
    )


@dataclass
class CodeEncodedConfig:
    """Base64, hex and \\u-escape runs: one run, or all of them together, may not be too long."""

    enabled: bool = True
    max_run_chars: int = 1024
    max_fraction: float = 0.5


@dataclass
class PiiConfig:
    enabled: bool = False
    emails: bool = True
    ipv4: bool = True
    email_replacement: str = "<EMAIL>"
    ipv4_replacement: str = "<IPV4>"


@dataclass
class CleanConfig:
    parts: int = 4
    min_text_length: int = 200
    max_text_length: int = 20_000_000
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
    parquet_text_field: str = "text"
    gopher_repetition: GopherRepetitionConfig = field(default_factory=GopherRepetitionConfig)
    gopher_quality: GopherQualityConfig = field(default_factory=GopherQualityConfig)
    c4: C4Config = field(default_factory=C4Config)
    fineweb: FineWebConfig = field(default_factory=FineWebConfig)
    paragraph_quality: ParagraphQualityConfig = field(default_factory=ParagraphQualityConfig)
    code_size: CodeSizeConfig = field(default_factory=CodeSizeConfig)
    code_lines: CodeLinesConfig = field(default_factory=CodeLinesConfig)
    code_alphanumeric: CodeAlphanumericConfig = field(default_factory=CodeAlphanumericConfig)
    code_autogenerated: CodeAutogeneratedConfig = field(default_factory=CodeAutogeneratedConfig)
    code_encoded: CodeEncodedConfig = field(default_factory=CodeEncodedConfig)
    pii: PiiConfig = field(default_factory=PiiConfig)

    def __post_init__(self) -> None:
        """Build each filter's section from a plain mapping, as read from YAML."""
        hints = typing.get_type_hints(CleanConfig)
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, dict) and dataclasses.is_dataclass(hints[f.name]):
                setattr(self, f.name, section_from_dict(hints[f.name], value, f"clean.{f.name}"))


@dataclass
class NearDedupConfig:
    """MinHash LSH: `bands` groups of `rows` signature values; `num_perm` = bands × rows."""

    enabled: bool = True
    ngram: int = 5
    num_perm: int = 128
    bands: int = 32
    rows: int = 4
    threshold: float = 0.7
    seed: int = 1

    def __post_init__(self) -> None:
        error = lsh_shape_error(self.bands, self.rows, self.num_perm)
        if error:
            raise ConfigError(error)


@dataclass
class DedupConfig:
    lowercase: bool = True
    exact: bool = True
    near: NearDedupConfig = field(default_factory=NearDedupConfig)

    def __post_init__(self) -> None:
        if isinstance(self.near, dict):
            self.near = section_from_dict(NearDedupConfig, self.near, "dedup.near")


@dataclass
class TokenizerConfig:
    model_type: str = "bpe"
    vocab_size: int = 8000
    character_coverage: float = 0.9995
    max_train_bytes: int = 300_000_000
    max_sentence_bytes: int = 4096
    eval_docs: int = 200


@dataclass
class ShardsConfig:
    parts: int = 4
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
    qk_norm: bool = False
    logit_softcap: float | None = None

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
    lr_schedule: str = "cosine"
    decay_fraction: float = 0.2
    weight_decay: float = 0.1
    optimizer: str = "adamw"
    z_loss: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.95
    max_grad_norm: float = 1.0
    max_consecutive_skips: int = 25
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
    compile: bool | str = "auto"
    nproc: int = 1
    # Nodes of a Slurm allocation, each running `nproc` processes under one torchrun.
    nodes: int = 1
    # Seconds the nodes of a several-node job wait for each other before the job fails.
    rendezvous_timeout: int = 600
    fsdp: bool = False
    # A Hugging Face Llama folder to start from (helox.import_hf); its tokenizer replaces
    # the tokenizer stage's. "" = pretraining starts from random weights, SFT from pretraining.
    init_from: str = ""

    @classmethod
    def from_file(cls, path: str | Path) -> TrainingConfig:
        return section_from_dict(cls, load_mapping(path), str(path))


@dataclass
class SFTConfig(TrainingConfig):
    data: str = ""
    max_pairs: int = 4000
    max_response_chars: int = 2000
    val_fraction: float = 0.05
    packing: bool = True


@dataclass
class DPOConfig(TrainingConfig):
    """Preference tuning of the SFT model, which stays frozen as the reference."""

    data: str = ""  # JSONL of {"prompt" | "messages", "chosen", "rejected"}; "" = derived
    max_pairs: int = 1000  # derived pairs
    val_fraction: float = 0.05
    packing: bool = True
    beta: float = 0.1  # strength of the pull towards the reference
    label_smoothing: float = 0.0  # conservative DPO: the share of preferences assumed flipped


# `sft:` and `dpo:` state what differs from `pretrain:` and take its other training keys,
# but for where a stage starts and how it is launched, which stay each stage's own.
FINE_TUNING_STAGES = ("sft", "dpo")
NOT_INHERITED = frozenset({"init_from", "nproc", "nodes", "rendezvous_timeout", "fsdp"})


def inherit_pretrain(config: dict[str, Any], stage: str) -> dict[str, Any]:
    """The `stage` section of `config` completed with the `pretrain` keys it does not state
    (all but NOT_INHERITED)."""
    pretrain = _mapping(config.get("pretrain"))
    inherited = {key: value for key, value in pretrain.items() if key not in NOT_INHERITED}
    return {**inherited, **_mapping(config.get(stage))}


@dataclass
class HumanEvalConfig:
    enabled: bool = True
    samples: int = 1  # completions per problem; pass@k needs samples >= k
    pass_at: list[int] = field(default_factory=lambda: [1])
    temperature: float = 0.0  # 0 = greedy (then samples must be 1)
    top_p: float = 0.95
    max_new_tokens: int = 128
    limit: int | None = None  # the first N problems; None = all 164
    timeout_s: float = 5.0  # wall-clock seconds per candidate program
    memory_mb: int = 1024  # address-space limit per candidate
    workers: int = 2  # candidate programs run side by side

    def __post_init__(self) -> None:
        too_large = [k for k in self.pass_at if k > self.samples]
        if too_large:
            raise ConfigError(
                f"eval.humaneval.pass_at asks for pass@{too_large[0]}, which needs "
                f"eval.humaneval.samples >= {too_large[0]}; samples is {self.samples}"
            )
        if self.temperature == 0 and self.samples > 1:
            raise ConfigError(
                f"eval.humaneval.samples is {self.samples} but eval.humaneval.temperature is 0 "
                "(greedy), which repeats one completion; set temperature > 0 or samples: 1"
            )


@dataclass
class NextLineTaskConfig:
    enabled: bool = True
    examples: int = 200
    choices: int = 4
    context_lines: int = 6


@dataclass
class ChoiceTaskConfig:
    name: str
    path: str


@dataclass
class EvalConfig:
    device: str = "auto"
    batch_size: int = 8
    bpb_max_batches: int | None = None  # None = whole val and test splits
    shots: int = 3  # solved examples placed before each multiple-choice question
    humaneval: HumanEvalConfig = field(default_factory=HumanEvalConfig)
    next_line: NextLineTaskConfig = field(default_factory=NextLineTaskConfig)
    tasks: list[ChoiceTaskConfig] = field(default_factory=list)

    def __post_init__(self) -> None:
        if isinstance(self.humaneval, dict):
            self.humaneval = section_from_dict(HumanEvalConfig, self.humaneval, "eval.humaneval")
        if isinstance(self.next_line, dict):
            self.next_line = section_from_dict(NextLineTaskConfig, self.next_line, "eval.next_line")
        self.tasks = [
            section_from_dict(ChoiceTaskConfig, task, f"eval.tasks[{index}]")
            if isinstance(task, dict)
            else task
            for index, task in enumerate(self.tasks)
        ]


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


@functools.cache
def schema() -> dict[str, Any]:
    """The configuration's JSON schema, read once; treat it as read-only."""
    return yaml.safe_load(SCHEMA_PATH.read_text(encoding="utf-8"))


def config_errors(config: dict[str, Any]) -> list[str]:
    """Every problem in `config`, each naming its key and what is allowed."""
    import jsonschema

    messages = []
    validator = jsonschema.Draft202012Validator(schema())
    for error in sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path)):
        if error.validator in ("additionalProperties", "unevaluatedProperties"):
            messages.extend(_unknown_key_errors(error))
            continue
        key = ".".join(str(p) for p in error.absolute_path) or "<top level>"
        messages.append(f"config key {key}: {error.message}{_allowed(error)}")
    messages.extend(shards_errors(config))
    messages.extend(corpus_errors(config))
    messages.extend(lsh_errors(config))
    return messages


def _allowed(error: Any) -> str:
    """What the rule that `error` broke allows, in words, or "" when its message says it."""
    rule, limit = error.validator, error.validator_value
    if rule == "enum":
        return f" (allowed: {', '.join(map(repr, limit))})"
    if rule == "const":
        return f" (allowed: {limit!r})"
    if rule in LIMIT_RULES:
        return f" ({rule} {limit})"
    if rule in ("oneOf", "anyOf"):
        return f" (allowed: {' or '.join(_describe(branch) for branch in limit)})"
    return ""


def _describe(branch: dict[str, Any]) -> str:
    """One alternative of a `oneOf`, in words: `null`, `integer minimum 8`."""
    if "$ref" in branch:
        branch = {**_definition(branch["$ref"]), **branch}
    if "const" in branch:
        return repr(branch["const"])
    return " ".join(
        [branch.get("type", "any value")]
        + [f"{rule} {branch[rule]}" for rule in LIMIT_RULES if rule in branch]
    )


def _definition(ref: str) -> dict[str, Any]:
    """The schema's `$defs` entry that `ref` (`#/$defs/name`) points to."""
    return schema()["$defs"][ref.split("/")[-1]]


def _allowed_keys(node: dict[str, Any]) -> set[str]:
    """The keys a schema object allows: its own properties and its `$ref`'s."""
    keys = set(node.get("properties", {}))
    if "$ref" in node:
        keys |= _allowed_keys(_definition(node["$ref"]))
    return keys


def _unknown_key_errors(error: Any) -> list[str]:
    """Each key that an `additionalProperties` or `unevaluatedProperties: false` refused,
    named by its full path with the keys allowed there."""
    allowed = sorted(_allowed_keys(error.schema))
    where = "".join(f"{part}." for part in error.absolute_path)
    return [
        f"config key {where}{key}: unknown key (allowed keys: {', '.join(allowed)})"
        for key in sorted(set(error.instance) - set(allowed))
    ]


def shards_errors(config: dict[str, Any]) -> list[str]:
    """Cross-key rules of the shards section: ratios summing to 1, parts within clean.parts."""
    shards, clean = (_mapping(config.get(name)) for name in ("shards", "clean"))
    messages = []
    clean_parts = clean.get("parts", CleanConfig().parts)
    parts = shards.get("parts")
    if isinstance(parts, int) and isinstance(clean_parts, int) and parts > clean_parts:
        messages.append(
            f"config key shards.parts: {parts} is more than clean.parts "
            f"({clean_parts}); each shards job takes whole deduplicated parts"
        )
    ratios = [shards.get(k) for k in ("train_split", "val_split", "test_split")]
    if all(isinstance(r, int | float) for r in ratios) and abs(sum(ratios) - 1.0) > 1e-6:
        messages.append(
            f"config key shards: train_split + val_split + test_split = {sum(ratios):g}, must be 1"
        )
    return messages


SOURCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def corpus_errors(config: dict[str, Any]) -> list[str]:
    """Cross-key rules of corpus.sources: each names a folder and a unique, plain name; a
    mixture replaces raw_dir, so the two are not set together."""
    corpus = _mapping(config.get("corpus"))
    sources = corpus.get("sources")
    if not isinstance(sources, list) or not sources:
        return []
    messages = []
    if corpus.get("raw_dir"):
        messages.append(
            "config key corpus.raw_dir: set it or corpus.sources, not both "
            "(a single folder is a one-entry corpus.sources)"
        )
    seen: set[str] = set()
    for index, source in enumerate(sources):
        source = _mapping(source)
        name, path = source.get("name"), source.get("path")
        where = f"config key corpus.sources.{index}"
        if not isinstance(name, str) or not SOURCE_NAME.match(name):
            messages.append(
                f"{where}.name: {name!r} must be letters, digits, '_', '.' or '-' "
                "(it prefixes file names)"
            )
        elif name in seen:
            messages.append(f"{where}.name: {name!r} names two sources")
        else:
            seen.add(name)
        if not isinstance(path, str) or not path:
            messages.append(f"{where}.path: a raw folder is required")
    return messages


def lsh_shape_error(bands: int, rows: int, num_perm: int) -> str | None:
    """Why the LSH bands do not tile the signature, or None when they do."""
    if bands * rows == num_perm:
        return None
    return (
        f"config keys dedup.near.bands × dedup.near.rows = {bands} × {rows} = {bands * rows}, "
        f"must equal dedup.near.num_perm = {num_perm}"
    )


def _mapping(value: Any) -> dict[str, Any]:
    """`value` if it is a mapping, else an empty one (the schema reports its type)."""
    return value if isinstance(value, dict) else {}


def lsh_errors(config: dict[str, Any]) -> list[str]:
    dedup = config.get("dedup")
    near = dedup.get("near") if isinstance(dedup, dict) else None
    if not isinstance(near, dict):
        return []
    shape = [near.get(key, getattr(NearDedupConfig, key)) for key in ("bands", "rows", "num_perm")]
    if not all(type(value) is int for value in shape):
        return []  # the schema names the wrong type
    error = lsh_shape_error(*shape)
    return [error] if error else []


def validate_config(config: dict[str, Any]) -> None:
    """Raise ConfigError listing every problem in `config`, or return quietly."""
    errors = config_errors(config)
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(errors))
