"""Checks of a configuration: the JSON schema's rules, then the rules that span keys.

Each problem is one message naming its key and what is allowed there. The schema says
types and ranges; the defaults live in the dataclasses of helox.config, which completes a
configuration before the rules across keys see it.
"""

from __future__ import annotations

import functools
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


def cross_key_errors(complete: dict[str, Any]) -> list[str]:
    """What breaks a rule across keys in `complete`, a configuration with every key set."""
    return shards_errors(complete) + corpus_errors(complete) + lsh_errors(complete)


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
    shape = [near.get(key) for key in ("bands", "rows", "num_perm")]
    if not all(type(value) is int for value in shape):
        return []  # the schema names the wrong type
    error = lsh_shape_error(*shape)
    return [error] if error else []
