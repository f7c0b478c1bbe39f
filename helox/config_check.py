"""Checks of a configuration: the JSON schema's rules, then the rules that span keys.

Each problem is one message naming its key and what is allowed there. The schema says
types and ranges; the defaults live in the dataclasses of helox.config, which completes a
configuration before the rules across keys see it.
"""

from __future__ import annotations

import functools
import math
import os
import re
from pathlib import Path
from typing import Any

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


@functools.cache
def schema() -> dict[str, Any]:
    """The configuration's JSON schema, read once; treat it as read-only."""
    return yaml.safe_load(SCHEMA_PATH.read_text(encoding="utf-8"))


def schema_errors(config: dict[str, Any]) -> list[str]:
    """What the schema refuses in `config`, each naming its key and what is allowed."""
    import jsonschema

    messages = []
    validator = jsonschema.Draft202012Validator(schema())
    for error in sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path)):
        if error.validator in ("additionalProperties", "unevaluatedProperties"):
            messages.extend(_unknown_key_errors(error))
            continue
        key = ".".join(str(p) for p in error.absolute_path) or "<top level>"
        messages.append(f"config key {key}: {error.message}{_allowed(error)}")
    return messages


def coerce_values(config: dict[str, Any]) -> None:
    """Replace, in place, each value written loosely where the schema says what it means:
    text that reads as the number, boolean or null the schema wants (snakemake's
    `--config 'pretrain={total_steps: 5}'` hands nested values over as text, and YAML reads
    `1e-3`, without a dot, as text), and an empty section (its keys all commented out) as {}."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    for error in validator.iter_errors(config):
        for rule in (error, *error.context):
            path = list(rule.absolute_path)
            value = _meant_value(rule.instance)
            if path and value is not None and _satisfies(validator, rule, value):
                parent = config
                for part in path[:-1]:
                    parent = parent[part]
                if parent[path[-1]] == rule.instance:
                    parent[path[-1]] = value[0]


def _meant_value(written: Any) -> tuple[Any] | None:
    """(what `written` means where the schema refused it,), or None when it means nothing
    else: an empty section a mapping, text the value it spells."""
    if written is None:
        return ({},)
    return _text_value(written) if isinstance(written, str) else None


def _text_value(text: str) -> tuple[Any] | None:
    """(the number, boolean or null that `text` spells,), or None when it spells none."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return (value,) if value is None or isinstance(value, bool | int | float) else None


def _satisfies(validator: Any, rule: Any, value: tuple[Any]) -> bool:
    """Whether `value[0]` passes the type, enum or const rule that refused the text."""
    allowed = rule.validator_value
    if rule.validator == "type":
        kinds = [allowed] if isinstance(allowed, str) else allowed
        return any(validator.is_type(value[0], kind) for kind in kinds)
    if rule.validator == "enum":
        return any(value[0] == member and type(value[0]) is type(member) for member in allowed)
    if rule.validator == "const":
        return value[0] == allowed and type(value[0]) is type(allowed)
    return False


def cross_key_errors(complete: dict[str, Any]) -> list[str]:
    """What breaks a rule across keys in `complete`, a configuration with every key set."""
    return (
        shards_errors(complete)
        + corpus_errors(complete)
        + own_output_errors(complete)
        + lsh_errors(complete)
        + model_shape_errors(complete)
        + sequence_errors(complete)
    )


def sequence_errors(config: dict[str, Any]) -> list[str]:
    """Each training stage's rows within the model's positions, up to the first stage that
    starts from an imported folder (`init_from`), whose positions the folder sets."""
    positions = _mapping(config.get("model")).get("max_position_embeddings")
    if type(positions) is not int:
        return []
    messages = []
    for stage in ("pretrain", "sft", "dpo"):
        section = _mapping(config.get(stage))
        if section.get("init_from"):
            break
        seq_len = section.get("seq_len")
        if type(seq_len) is int and seq_len > positions:
            messages.append(
                f"config key {stage}.seq_len: {seq_len} is more than "
                f"model.max_position_embeddings {positions}, the longest sequence the model "
                "sees; lower the one or raise the other"
            )
    return messages


def model_shape_errors(config: dict[str, Any]) -> list[str]:
    """Cross-key rules of the model: whole heads in the width, whole query groups per
    key-value head."""
    model = _mapping(config.get("model"))
    width, heads = model.get("hidden_size"), model.get("num_attention_heads")
    kv_heads = model.get("num_key_value_heads")
    messages = []
    if type(width) is int and type(heads) is int and heads > 0 and width % heads:
        messages.append(
            f"config key model.num_attention_heads: {heads} heads do not divide "
            f"model.hidden_size {width}; each head takes an equal share of the width"
        )
    if type(heads) is int and type(kv_heads) is int and kv_heads > 0 and heads % kv_heads:
        messages.append(
            f"config key model.num_key_value_heads: {kv_heads} does not divide "
            f"model.num_attention_heads {heads}"
        )
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
    if rule == "pattern" and "description" in error.schema:
        return f" (allowed: {error.schema['description']})"
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
    clean_parts, parts = clean.get("parts"), shards.get("parts")
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


RESULTS_DIR = "results"  # every stage's outputs, relative to the workflow's directory
SOURCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def corpus_errors(config: dict[str, Any]) -> list[str]:
    """Cross-key rules of corpus.sources: each names its own folder (none inside another's,
    whose files it would read again), a unique, plain name and a finite weight; a mixture
    replaces raw_dir, so the two are not set together."""
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
        weight = source.get("weight")
        if isinstance(weight, float) and not math.isfinite(weight):
            messages.append(f"{where}.weight: {weight} must be a finite number")
    return messages + overlapping_source_errors(sources)


def overlapping_source_errors(sources: list[Any]) -> list[str]:
    """A source whose folder is another's, or inside it: its files would be read twice."""
    folders = []
    for index, source in enumerate(sources):
        path = _mapping(source).get("path")
        if isinstance(path, str) and path:
            folders.append((index, _mapping(source).get("name"), os.path.realpath(path)))
    messages = []
    for index, _, folder in folders:
        for other_index, other_name, other in folders:
            if other_index == index:
                continue
            same = folder == other and other_index < index
            if same or folder.startswith(other.rstrip(os.sep) + os.sep):
                where = "is the folder of" if same else "lies inside the folder of"
                messages.append(
                    f"config key corpus.sources.{index}.path: {folder} {where} source "
                    f"{other_name!r} ({other}), so its files would be read twice: "
                    "give each source a folder of its own"
                )
    return messages


def own_output_errors(config: dict[str, Any], results: str = RESULTS_DIR) -> list[str]:
    """A raw folder that holds the pipeline's `results` folder (`raw_dir: .` in the
    project): cleaning would read the pipeline's own outputs back as corpus."""
    corpus = _mapping(config.get("corpus"))
    sources = corpus.get("sources") if isinstance(corpus.get("sources"), list) else []
    folders = [("corpus.raw_dir", corpus.get("raw_dir"))] + [
        (f"corpus.sources.{index}.path", _mapping(source).get("path"))
        for index, source in enumerate(sources)
    ]
    outputs = os.path.realpath(results)
    messages = []
    for key, path in folders:
        if not isinstance(path, str) or not path:
            continue
        folder = os.path.realpath(path)
        if outputs == folder or outputs.startswith(folder.rstrip(os.sep) + os.sep):
            messages.append(
                f"config key {key}: {folder} holds the pipeline's own outputs ({outputs}), "
                "which cleaning would read back as corpus: point it at a folder of raw files"
            )
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
    shape = [near.get(key) for key in ("bands", "rows", "num_perm")]
    if not all(type(value) is int for value in shape):
        return []  # the schema names the wrong type
    error = lsh_shape_error(*shape)
    return [error] if error else []
