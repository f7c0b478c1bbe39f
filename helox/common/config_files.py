"""Configuration files: reading one mapping, merging several as Snakemake's `--configfile`
does, and building a section's dataclass from a mapping, naming any unknown key."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from helox.common.schema import coerce_values, retired_key_error, schema_errors

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range; the message names the key."""


def load_mapping(path: str | Path) -> dict[str, Any]:
    """Read a JSON or YAML file holding one mapping; a syntax error names its line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        data = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
    except (FileNotFoundError, IsADirectoryError):
        raise ConfigError(f"{path}: no such config file") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text (byte {error.start})") from None
    except json.JSONDecodeError as error:
        position = _position(error.lineno, error.colno)
        raise ConfigError(f"{path}{position}: not valid JSON: {error.msg}") from None
    except yaml.YAMLError as error:
        position, problem = _yaml_position(error), _yaml_problem(error)
        raise ConfigError(f"{path}{position}: not valid YAML: {problem}") from None
    if data is None:
        raise ConfigError(
            f"{path} is empty: a config file maps sections to keys, as config.yaml does "
            "(for example `pretrain: {total_steps: 100}`)"
        )
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: expected a mapping of keys to values, got {type(data).__name__}"
        )
    return data


def _position(line: int, column: int) -> str:
    """Where in a config file an error was found, as it follows the file's name."""
    return f", line {line}, column {column}"


def _yaml_position(error: yaml.YAMLError) -> str:
    """Where a YAML error was found (`_position`), or "" when it is not known."""
    mark = getattr(error, "problem_mark", None)
    return _position(mark.line + 1, mark.column + 1) if mark else ""


def _yaml_problem(error: yaml.YAMLError) -> str:
    """What YAML found wrong, with what it was reading when that tells more."""
    problem = getattr(error, "problem", None)
    if not problem:
        return str(error)
    context = getattr(error, "context", None)
    return f"{problem} ({context})" if context else problem


def merged_config(paths: list[str | Path]) -> dict[str, Any]:
    """The mappings in `paths` merged key by key, later ones winning, as `--configfile` does."""
    merged: dict[str, Any] = {}
    for path in paths:
        merge_into(merged, load_mapping(path))
    return merged


def merge_into(target: dict[str, Any], overlay: dict[str, Any]) -> None:
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            merge_into(target[key], value)
        else:
            target[key] = value


def section_from_dict(cls: type[T], data: dict[str, Any] | None, where: str) -> T:
    """Build dataclass `cls` from `data`, naming `where.key` for an unknown key."""
    data = dict(data or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    for key in unknown:
        if retired := retired_key_error(f"{where}.{key}"):
            raise ConfigError(retired)
    if unknown:
        raise ConfigError(
            f"unknown key {where}.{unknown[0]}; allowed keys: {', '.join(sorted(known))}"
        )
    return cls(**data)


def build_sections(section: Any, where: str) -> None:
    """Build, in place, each field of dataclass `section` that holds a section (a dataclass,
    one or None, or a list of them) and is still a mapping as read from YAML, naming
    `where.field` (and `.index` in a list) for an unknown key."""
    hints = typing.get_type_hints(type(section))
    for f in dataclasses.fields(section):
        value, hint = getattr(section, f.name), _without_none(hints[f.name])
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            setattr(section, f.name, section_from_dict(hint, value, f"{where}.{f.name}"))
        elif typing.get_origin(hint) is list and dataclasses.is_dataclass(typing.get_args(hint)[0]):
            item_cls = typing.get_args(hint)[0]
            items = [
                section_from_dict(item_cls, item, f"{where}.{f.name}.{index}")
                if isinstance(item, dict)
                else item
                for index, item in enumerate(value)
            ]
            setattr(section, f.name, items)


def _without_none(hint: Any) -> Any:
    """`X` for a type hint `X | None`; any other hint as it is."""
    members = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and len(members) == 1
    return members[0] if optional else hint


def section_from_file(cls: type[T], path: str | Path, section: str) -> T:
    """Dataclass `cls` from a file holding only the keys of configuration section `section`,
    checked by the schema; an error names the file and the key."""
    data = load_mapping(path)
    coerce_values({section: data})
    errors = schema_errors({section: data})
    if errors:
        raise ConfigError(f"{path}: invalid {section} section:\n  " + "\n  ".join(errors))
    return section_from_dict(cls, data, str(path))
