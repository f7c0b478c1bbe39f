"""The configuration's JSON schema: reading it, checking a configuration against it with
messages that name each key and what is allowed, and reading loosely written values as the
schema means them. Types and ranges live in the schema; defaults in each section's dataclass."""

from __future__ import annotations

import functools
import math
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
# Keys that once existed, each with what replaced it: a config that still sets one is refused
# with this advice instead of "unknown key".
RETIRED_KEYS = {
    "clean.max_urls": (
        "retired: it counted URLs whatever the length of the text, so it dropped long modules "
        "that cite their sources. clean.max_url_char_fraction replaces it: the share of a "
        "document's characters inside URLs above which it is dropped as a link list (default "
        "0.2, NeMo Curator's rule). Delete max_urls; set max_url_char_fraction for another share"
    ),
}


def retired_key_error(key: str) -> str | None:
    """The error for dotted `key` if it is a retired key, naming what replaced it; else None."""
    advice = RETIRED_KEYS.get(key)
    return f"config key {key}: {advice}" if advice else None


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
        if error.validator == "not":  # a key that no value makes right here, and why
            messages.append(f"config key {key}: not allowed here: {error.schema['description']}")
            continue
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
        retired_key_error(f"{where}{key}")
        or f"config key {where}{key}: unknown key (allowed keys: {', '.join(allowed)})"
        for key in sorted(set(error.instance) - set(allowed))
    ]
