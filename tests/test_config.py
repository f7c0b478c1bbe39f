"""Each default written once: config.yaml states only what differs from the dataclasses (and
the keys a newcomer edits first), the workflow completes it, and `helox config` shows it."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from helox.cli.main import main
from helox.common.config_files import ConfigError, section_from_dict
from helox.data.clean_config import CleanConfig
from helox.pipeline.config import (
    NOT_INHERITED,
    SECTIONS,
    completed,
    config_errors,
    format_config,
    resolve_config,
    section_defaults,
)
from helox.train.config import TrainingConfig

REPO = Path(__file__).resolve().parents[1]
SHIPPED = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
# Keys config.yaml holds at their defaults on purpose: where the data comes from, the seed and
# the scatter width, which a newcomer looks for first. Every other key must differ.
KEPT_ON_PURPOSE = {
    ("seed",),
    ("corpus", "raw_dir"),
    ("corpus", "sources"),
    ("clean", "parts"),
    ("sft", "data"),
    ("dpo", "data"),
    ("eval", "tasks"),
    ("eval", "baselines"),
}


def leaves(mapping: dict[str, Any], path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The path of every value in `mapping` that is not itself a mapping."""
    for key, value in mapping.items():
        if isinstance(value, dict):
            yield from leaves(value, (*path, key))
        else:
            yield (*path, key)


def without(config: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    """A copy of `config` with the key at `path` left out."""
    copied = copy.deepcopy(config)
    node = copied
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return copied


@pytest.mark.parametrize(
    "path", [p for p in leaves(SHIPPED) if p not in KEPT_ON_PURPOSE], ids=".".join
)
def test_config_yaml_states_no_key_at_its_default(path: tuple[str, ...]) -> None:
    assert resolve_config(without(SHIPPED, path)) != resolve_config(SHIPPED), (
        f"config.yaml's {'.'.join(path)} repeats its default: leave it to helox/pipeline/config.py"
    )


def test_the_keys_kept_on_purpose_are_in_config_yaml() -> None:
    assert set(leaves(SHIPPED)) >= KEPT_ON_PURPOSE


def test_every_default_is_valid_and_every_section_complete() -> None:
    defaults = resolve_config({})
    assert config_errors(defaults) == []
    assert config_errors(resolve_config(SHIPPED)) == []
    for name, cls in SECTIONS.items():
        assert set(defaults[name]) == {f.name for f in dataclasses.fields(cls)}
        assert section_from_dict(cls, defaults[name], name) == cls()


def test_the_completed_values_have_the_dataclass_types() -> None:
    """Lists stay lists and numbers keep their type, so a rule's params read the same
    whether a key is written out or left to its default."""
    written = yaml.safe_load(yaml.safe_dump(resolve_config({}), sort_keys=False))
    assert repr(written) == repr(resolve_config({}))


def test_fine_tuning_stages_take_pretrains_training_keys_but_not_its_launch() -> None:
    config = resolve_config(
        {
            "pretrain": {"seq_len": 77, "nproc": 4, "init_from": "hf/llama"},
            "sft": {"batch_size": 3},
            "dpo": {"beta": 0.5},
        }
    )
    sft, dpo = config["sft"], config["dpo"]
    assert (sft["seq_len"], sft["batch_size"], dpo["seq_len"], dpo["beta"]) == (77, 3, 77, 0.5)
    assert (sft["nproc"], sft["init_from"]) == (1, "")
    assert (dpo["nproc"], dpo["fsdp"], dpo["init_from"]) == (1, False, "")
    assert sft["max_pairs"] == section_defaults(SECTIONS["sft"])["max_pairs"]
    training = {f.name for f in dataclasses.fields(TrainingConfig)}
    assert list(sft)[: len(training) - len(NOT_INHERITED)] == [
        key for key in config["pretrain"] if key not in NOT_INHERITED
    ]


def test_completion_fills_nested_keys_and_keeps_what_is_stated() -> None:
    defaults = {"a": 1, "near": {"bands": 32, "rows": 4}, "tasks": []}
    stated = {"near": {"rows": 8}, "tasks": [{"name": "x"}], "extra": True}
    assert completed(defaults, stated) == {
        "a": 1,
        "near": {"bands": 32, "rows": 8},
        "tasks": [{"name": "x"}],
        "extra": True,
    }
    assert completed(defaults, "not a mapping") == "not a mapping"


def test_the_printed_config_is_the_completed_one_with_its_defaults() -> None:
    text = format_config(SHIPPED)
    assert yaml.safe_load(text) == resolve_config(SHIPPED)
    lines = text.splitlines()
    assert "  vocab_size: 4000  # default: 8000" in lines
    assert "    max_words: 100000" in lines  # at its default: no comment
    sft = lines[lines.index("sft:") :]
    assert "  seq_len: 384  # default: 128" in sft  # the default of sft's keys is pretrain's


def test_helox_config_prints_an_overlay_and_names_a_bad_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    overlay = tmp_path / "my.yaml"
    overlay.write_text("pretrain: {warmup_steps: 7}\ndedup: {near: {threshold: 0.8}}\n")
    assert main(["config", "--config", str(REPO / "config.yaml"), "--config", str(overlay)]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["pretrain"]["warmup_steps"] == 7
    assert printed["dpo"]["warmup_steps"] == 10  # stated by config.yaml's dpo section
    assert printed["dedup"]["near"] == {
        **section_defaults(SECTIONS["dedup"])["near"],
        "threshold": 0.8,
    }
    overlay.write_text("dedup: {near: {treshold: 0.8}}\n")
    assert main(["config", "--config", str(overlay)]) == 2
    assert "config key dedup.near.treshold: unknown key" in capsys.readouterr().err


def test_a_retired_key_is_refused_with_what_replaced_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    overlay = tmp_path / "old.yaml"
    overlay.write_text("clean: {max_urls: 20}\n")
    assert main(["config", "--config", str(overlay)]) == 2
    error = capsys.readouterr().err
    assert "config key clean.max_urls: retired: it counted URLs" in error
    assert "Delete max_urls; set max_url_char_fraction" in error
    with pytest.raises(ConfigError, match=r"clean\.max_urls: retired.*max_url_char_fraction"):
        section_from_dict(CleanConfig, {"max_urls": 20}, "clean")
    assert config_errors({"clean": {"max_url_char_fraction": 0.3}}) == []
