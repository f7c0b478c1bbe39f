"""Bad config: every rule of the schema, broken one at a time in the shipped config (with its
defaults), gives an error naming the key and what is allowed; and the workflow stops before
any job runs.

The cases are derived from the schema itself, so a rule added to it is tested at once, and
a kind of rule this file cannot break fails the test that lists them.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from test_workflow import REPO, snakemake

from helox.common.schema import schema
from helox.pipeline.config import config_errors, resolve_config

SCHEMA = schema()
# The shipped config completed with the defaults, so every key holds a value to break.
SHIPPED = resolve_config(yaml.safe_load((REPO / "config.yaml").read_text()))
BOUNDS = ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum")
SIZES = ("minLength", "maxLength", "minItems", "maxItems")
# Keywords that say nothing a value can break.
NOTES = {"description", "title", "$schema", "$defs", "default"}
TYPE_EXAMPLES = {
    "integer": 1,
    "number": 0.5,
    "string": "a",
    "boolean": True,
    "array": [],
    "object": {},
    "null": None,
}


@dataclass(frozen=True)
class Case:
    """One broken rule: the value at `path` replaced by `value`; the error must name `key`
    and contain every one of `allowed`."""

    path: tuple[str | int, ...]
    rule: str
    value: Any
    allowed: tuple[str, ...]

    @property
    def key(self) -> str:
        return ".".join(map(str, self.path))


def resolve(node: dict) -> dict:
    """`node` with its `$ref` (to `#/$defs/...`) merged in."""
    if "$ref" not in node:
        return node
    target = SCHEMA
    for part in node["$ref"].removeprefix("#/").split("/"):
        target = target[part]
    merged = {**resolve(target), **{k: v for k, v in node.items() if k != "$ref"}}
    if "properties" in target and "properties" in node:
        merged["properties"] = {**resolve(target)["properties"], **node["properties"]}
    return merged


def wrong_type(types: list[str]) -> Any:
    """A value of none of `types` (an integer counts as a number, as in JSON Schema)."""
    for candidate in ("string", "integer", "array", "object", "boolean"):
        fits = candidate in types or (candidate == "integer" and "number" in types)
        if not fits:
            return TYPE_EXAMPLES[candidate]
    raise AssertionError(f"every type is allowed: {types}")


def describe(node: dict) -> tuple[str, ...]:
    """The words an error must use for one alternative of a `oneOf`: its type and bounds."""
    node = resolve(node)
    if "const" in node:
        return (repr(node["const"]),)
    return (node["type"], *(f"{rule} {node[rule]}" for rule in BOUNDS if rule in node))


# Values that break a `pattern`: the first that the pattern does not match is used.
PATTERN_BREAKERS = ("no-leading-dot", "a name/with spaces")


def cases(node: dict, path: tuple, value: Any) -> Iterator[Case]:
    """A case for every rule of `node`, the schema of the shipped `value` at `path`."""
    node = resolve(node)
    for rule, limit in node.items():
        if rule in NOTES or rule == "properties" or (rule == "type" and not path):
            continue  # a config is always a mapping: the top level's type cannot be broken
        if rule == "type":
            types = limit if isinstance(limit, list) else [limit]
            yield Case(path, rule, wrong_type(types), tuple(repr(t) for t in types))
        elif rule == "enum":
            yield Case(path, rule, "not-one-of-them", tuple(map(repr, limit)))
        elif rule == "const":
            bad = not limit if isinstance(limit, bool) else "other"
            yield Case(path, rule, bad, (f"allowed: {limit!r}",))
        elif rule in BOUNDS:
            step = 1 if node.get("type") == "integer" else 0.5
            bad = limit + (step if rule.startswith("max") else -step)
            bad = limit if rule.startswith("exclusive") else bad
            yield Case(path, rule, bad, (f"{rule} {limit}",))
        elif rule == "pattern":
            bad = next(text for text in PATTERN_BREAKERS if not re.search(limit, text))
            yield Case(path, rule, bad, (repr(limit),))
        elif rule in SIZES:
            size = limit - 1 if rule.startswith("min") else limit + 1
            bad = (value or [None])[:1] * size if node.get("type") == "array" else "x" * size
            yield Case(path, rule, bad, (f"{rule} {limit}",))
        elif rule == "oneOf":
            allowed = tuple(words for branch in limit for words in describe(branch))
            yield Case(path, rule, "none-of-them", allowed)
            for branch in limit:
                for case in cases(branch, path, value):
                    if case.rule in BOUNDS:
                        yield Case(path, f"oneOf {case.rule}", case.value, allowed)
        elif rule == "uniqueItems" and limit:
            twice = (value or ["x"])[:1] * 2
            yield Case(path, rule, twice, ("has non-unique elements",))
        elif rule == "not" and limit == {}:
            yield Case(path, "a key allowed nowhere here", {"rank": 8}, (node["description"],))
        elif rule in ("additionalProperties", "unevaluatedProperties") and limit is False:
            names = tuple(sorted(node.get("properties", {})))
            yield Case((*path, "no_such_key"), "unknown key", 1, names)
        elif rule == "additionalProperties":
            for name, section in (value or {}).items():
                yield from cases(limit, (*path, name), section)
        elif rule == "required":
            yield Case(path, rule, {}, (f"{limit[0]!r} is a required property",))
        elif rule == "items":
            example = (value or [None])[0]
            yield from cases(limit, (*path, 0), example)
        elif rule == "prefixItems":
            for index, item in enumerate(limit):
                yield from cases(item, (*path, index), (value or [None] * len(limit))[index])
        else:
            raise AssertionError(f"{'.'.join(map(str, path))}: no bad value for rule {rule!r}")
    for name, child in node.get("properties", {}).items():
        yield from cases(child, (*path, name), (value or {}).get(name))


def with_value(config: dict, path: tuple, value: Any) -> dict:
    """A copy of `config` with `value` at `path`; an integer in `path` is a list position."""
    changed = copy.deepcopy(config)
    node = changed
    for position, part in enumerate(path[:-1]):
        following = path[position + 1]
        if isinstance(node, dict):
            if node.get(part) is None:  # absent, or an optional section that is off (null)
                node[part] = [] if isinstance(following, int) else {}
            node = node[part]
        else:
            while len(node) <= part:
                node.append([] if isinstance(following, int) else {})
            node = node[part]
    last = path[-1]
    if isinstance(node, list):
        node[last:] = [value]
    else:
        node[last] = value
    return changed


CASES = list(cases(SCHEMA, (), SHIPPED))


def test_the_shipped_config_is_valid_and_every_section_has_cases() -> None:
    assert config_errors(SHIPPED) == []
    assert {case.path[0] for case in CASES} >= set(SCHEMA["properties"])


@pytest.mark.parametrize("case", CASES, ids=[f"{c.key}-{c.rule}" for c in CASES])
def test_a_broken_rule_names_the_key_and_what_is_allowed(case: Case) -> None:
    errors = config_errors(with_value(SHIPPED, case.path, case.value))
    naming = [error for error in errors if f"config key {case.key}:" in error]
    assert naming, f"no error names {case.key}: {errors}"
    for allowed in case.allowed:
        assert any(allowed in error for error in naming), f"{allowed!r} not in {naming}"


def test_the_workflow_stops_on_bad_values_before_any_job_runs(tmp_path) -> None:
    overlay = {
        "pretrain": {"learning_rate": "fast"},
        "tokenizer": {"model_type": "wordpiece"},
        "model": {"vocab_size": 4},
        "shards": {"train_split": 0.5},
        "corpus": {"sources": [{"name": "web", "path": "data", "gpus": 1}]},
    }
    result = snakemake(tmp_path, "results/sft/final", overlay=overlay)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "config key pretrain.learning_rate: 'fast' is not of type 'number'" in output
    assert "config key tokenizer.model_type:" in output and "'bpe', 'unigram'" in output
    assert "config key model.vocab_size:" in output and "null or integer minimum 8" in output
    assert "config key shards: train_split + val_split + test_split = 0.7, must be 1" in output
    assert "config key corpus.sources.0.gpus: unknown key (allowed keys: kind, name, path" in output
    assert not (tmp_path / "results").exists() and not (tmp_path / "logs").exists()
