"""The rules of a configuration that span keys (helox.common.schema checks each key alone).

Each problem is one message naming its key and what is allowed there. helox.pipeline.config
completes a configuration with every section's defaults before these rules see it.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

from helox.data.minhash import lsh_shape_error


def cross_key_errors(complete: dict[str, Any]) -> list[str]:
    """What breaks a rule across keys in `complete`, a configuration with every key set."""
    return (
        shards_errors(complete)
        + corpus_errors(complete)
        + own_output_errors(complete)
        + lsh_errors(complete)
        + model_shape_errors(complete)
        + sequence_errors(complete)
        + init_errors(complete)
        + baseline_errors(complete)
    )


TRAINING_STAGES = ("pretrain", "sft", "dpo")  # in the order the pipeline runs them


def init_errors(config: dict[str, Any]) -> list[str]:
    """An `init_from` names a folder, and only one stage sets one: the stages before it do
    not run, so a second import would be thrown away."""
    importing = [
        stage
        for stage in TRAINING_STAGES
        if isinstance(_mapping(config.get(stage)).get("init_from"), str)
        and _mapping(config.get(stage))["init_from"]
    ]
    messages = [
        f"config key {stage}.init_from: {importing[0]}.init_from is set too, and a run starts "
        f"from one imported folder (the stages before it do not run); keep one"
        for stage in importing[1:]
    ]
    for stage in importing[:1]:
        folder = config[stage]["init_from"]
        if not os.path.isdir(folder):
            messages.append(
                f"config key {stage}.init_from: {os.path.abspath(folder)} is not a folder; "
                "name a Hugging Face model folder (config.json, its safetensors and tokenizer)"
            )
    return messages


def baseline_errors(config: dict[str, Any]) -> list[str]:
    """Each of eval.baselines names a column of its own (unique, and not a training stage's)
    and a folder."""
    baselines = _mapping(config.get("eval")).get("baselines")
    messages = []
    seen: set[str] = set()
    for index, baseline in enumerate(baselines if isinstance(baselines, list) else []):
        name, path = _mapping(baseline).get("name"), _mapping(baseline).get("path")
        if isinstance(path, str) and path and not os.path.isdir(path):
            messages.append(
                f"config key eval.baselines.{index}.path: {os.path.abspath(path)} is not a "
                "folder; name a Hugging Face model folder (config.json, its safetensors and "
                "tokenizer)"
            )
        where = f"config key eval.baselines.{index}.name"
        if name in TRAINING_STAGES:
            messages.append(
                f"{where}: {name!r} is a training stage's name, which its column would share; "
                "name the baseline after its model"
            )
        elif isinstance(name, str) and name in seen:
            messages.append(f"{where}: {name!r} names two baselines")
        elif isinstance(name, str):
            seen.add(name)
    return messages


def sequence_errors(config: dict[str, Any]) -> list[str]:
    """Each training stage's rows within the model's positions, up to the first stage that
    starts from an imported folder (`init_from`), whose positions the folder sets."""
    positions = _mapping(config.get("model")).get("max_position_embeddings")
    if type(positions) is not int:
        return []
    messages = []
    for stage in TRAINING_STAGES:
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
    """Cross-key rules of the model: whole heads in the width (unless model.head_dim sets
    theirs), whole query groups per key-value head."""
    model = _mapping(config.get("model"))
    width, heads = model.get("hidden_size"), model.get("num_attention_heads")
    kv_heads = model.get("num_key_value_heads")
    messages = []
    explicit_heads = model.get("head_dim") is not None
    if (
        type(width) is int
        and type(heads) is int
        and heads > 0
        and width % heads
        and not explicit_heads
    ):
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
