"""The Hugging Face families a Helox model is read from and written as, one small table each.

Llama (SmolLM2, TinyLlama, Llama 3.x), Mistral, Qwen2/Qwen2.5 and Qwen3 are one decoder with a
few switches, which `HeloxLM` has: q/k/v biases (Qwen2), per-head q/k RMSNorm before RoPE
(Qwen3), a `head_dim` of its own, Llama 3.1's RoPE scaling, tied or untied embeddings and
Mistral's sliding window (accepted where it is at least as long as every sequence, which is
where it equals full attention). Their tensors already have Helox's names. A table says which
`config.json` keys map to which ModelConfig fields, transformers' defaults where a key is
absent, the values that must hold, the switches the family fixes and the class to write back.
Anything else that changes what the network computes is refused by name: another family
(Gemma, Phi-3, OLMo 2, ...) by its `architectures`, another RoPE by its `rope_type`.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any

from helox.model.config import ModelConfig, check_config, head_dim, intermediate_size, kv_heads

# config.json key → ModelConfig field, in every family.
COMMON_FIELDS = {
    "vocab_size": "vocab_size",
    "hidden_size": "hidden_size",
    "intermediate_size": "intermediate_size",
    "num_hidden_layers": "num_layers",
    "num_attention_heads": "num_attention_heads",
    "num_key_value_heads": "num_key_value_heads",
    "head_dim": "head_dim",
    "max_position_embeddings": "max_position_embeddings",
    "rms_norm_eps": "norm_eps",
    "tie_word_embeddings": "tie_word_embeddings",
    "initializer_range": "initializer_range",
}
# The shape: a config.json without one of these is malformed, whatever transformers defaults.
SHAPE_KEYS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
)
# transformers' values for absent keys (None: derived, as ModelConfig derives it).
COMMON_DEFAULTS = {
    "num_key_value_heads": None,
    "head_dim": None,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
    "initializer_range": 0.02,
}
COMMON_REQUIRED = {"hidden_act": "silu"}
# The RoPE types Helox computes, with the scaling keys each reads (ModelConfig.rope_scaling).
ROPE_SCALING_KEYS = {
    "default": (),
    "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"),
}
ROPE_KEYS = {"rope_type", "type", "rope_theta", "partial_rotary_factor"}  # type: the hub's older
DEFAULT_ROPE_THETA = 10000.0
# What each ModelConfig switch must be for a family to express the model, and what else is.
EXPRESSIBLE = {
    "use_rms_norm": (True, "LayerNorm; every family has RMSNorm"),
    "use_swiglu": (True, "a GELU MLP; every family has SwiGLU"),
    "use_rope_embeddings": (True, "learned positions; every family has RoPE"),
    "logit_softcap": (None, "no family caps its logits"),
    "qk_norm": (False, "per-head q/k norms, which only Qwen3 has"),
    "qkv_bias": (False, "q/k/v biases, which only Qwen2 has"),
    "sliding_window": (None, "a sliding window, which only Mistral has"),
}


@dataclass(frozen=True)
class Family:
    """One Hugging Face family: what its `config.json` says beyond the common keys."""

    name: str
    architecture: str  # the transformers class a folder is written as
    model_type: str
    fields: dict[str, str] = field(default_factory=dict)  # key → ModelConfig field
    defaults: dict[str, Any] = field(default_factory=dict)  # transformers' values when absent
    required: dict[str, Any] = field(default_factory=dict)  # key → the value it must hold
    switches: dict[str, Any] = field(default_factory=dict)  # ModelConfig fields it fixes


FAMILIES = {
    family.name: family
    for family in (
        Family(
            "llama",
            "LlamaForCausalLM",
            "llama",
            defaults={"max_position_embeddings": 2048},
            required={"attention_bias": False, "mlp_bias": False, "pretraining_tp": 1},
        ),
        Family(
            "mistral",
            "MistralForCausalLM",
            "mistral",
            fields={"sliding_window": "sliding_window"},
            defaults={"max_position_embeddings": 131072, "sliding_window": 4096},
        ),
        Family(
            "qwen2",
            "Qwen2ForCausalLM",
            "qwen2",
            defaults={"max_position_embeddings": 32768, "num_key_value_heads": 32},
            required={"use_sliding_window": False},
            switches={"qkv_bias": True},
        ),
        Family(
            "qwen3",
            "Qwen3ForCausalLM",
            "qwen3",
            defaults={"max_position_embeddings": 32768, "num_key_value_heads": 32, "head_dim": 128},
            required={"attention_bias": False, "use_sliding_window": False},
            switches={"qk_norm": True},
        ),
    )
}


class NotImportableError(ValueError):
    """The source folder uses something a Helox model cannot compute the same way."""


class NotExportableError(ValueError):
    """The model uses something its Hugging Face family has no switch for."""


def family_of(source: dict[str, Any], where: str) -> Family:
    """The family `source` (a `config.json`) belongs to, by `architectures` and `model_type`."""
    known = ", ".join(family.architecture for family in FAMILIES.values())
    architectures, model_type = source.get("architectures"), source.get("model_type")
    by_class = {family.architecture: family for family in FAMILIES.values()}
    by_type = {family.model_type: family for family in FAMILIES.values()}
    if architectures is not None:
        if not isinstance(architectures, list) or len(architectures) != 1:
            raise NotImportableError(f"{where}: architectures {architectures!r} (expected one)")
        family = by_class.get(architectures[0])
        if family is None:
            raise NotImportableError(
                f"{where}: architectures {architectures!r} (Helox imports {known})"
            )
    elif model_type in by_type:
        family = by_type[model_type]
    else:
        raise NotImportableError(
            f"{where}: no architectures, and model_type {model_type!r} is none of {sorted(by_type)}"
        )
    if model_type not in (None, family.model_type):
        raise NotImportableError(
            f"{where}: model_type {model_type!r} (expected {family.model_type!r} for "
            f"{family.architecture})"
        )
    return family


def rope_of(source: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """RoPE's parameters as transformers 5 reads them, and the key holding them: the hub's
    older `rope_scaling` (beside a top-level `rope_theta`) wins over `rope_parameters`."""
    key = "rope_scaling" if source.get("rope_scaling") else "rope_parameters"
    rope = dict(source.get(key) or {})
    rope.setdefault("rope_theta", source.get("rope_theta", DEFAULT_ROPE_THETA))
    rope.setdefault("partial_rotary_factor", source.get("partial_rotary_factor", 1.0))
    rope.setdefault("rope_type", rope.get("type", "default"))
    if rope["rope_type"] == "llama3":
        if "original_max_position_embeddings" in source:
            rope["original_max_position_embeddings"] = source["original_max_position_embeddings"]
        rope.setdefault("original_max_position_embeddings", source.get("max_position_embeddings"))
    return rope, key


def rope_problems(rope: dict[str, Any], key: str) -> list[str]:
    """What in RoPE's parameters Helox cannot compute: another type, a key it would not read,
    a value that is not a positive number, a partial rotation."""
    scaling_keys = ROPE_SCALING_KEYS.get(rope["rope_type"])
    if scaling_keys is None:
        return [
            f"{key}.rope_type {rope['rope_type']!r} (Helox computes {sorted(ROPE_SCALING_KEYS)})"
        ]
    problems = [
        f"{key}.{name} (rope_type {rope['rope_type']!r} has no such key)"
        for name in sorted(set(rope) - ROPE_KEYS - set(scaling_keys))
    ]
    for name in ("rope_theta", *scaling_keys):
        if malformed(rope.get(name), float):
            problems.append(f"{key}.{name} {rope.get(name)!r} (expected a number above 0)")
    if rope["partial_rotary_factor"] != 1.0:
        problems.append(
            f"partial_rotary_factor {rope['partial_rotary_factor']!r} (Helox rotates whole heads)"
        )
    if not problems and scaling_keys and rope["high_freq_factor"] <= rope["low_freq_factor"]:
        problems.append(f"{key}.high_freq_factor is not above {key}.low_freq_factor")
    return problems


def malformed(value: Any, hint: Any) -> bool:
    """True when `value` is not of type `hint` (int, float, bool, or one of them or None) or
    is a number no greater than 0."""
    allowed = set(typing.get_args(hint)) or {hint}
    if value is None:
        return type(None) not in allowed
    if isinstance(value, bool):
        return bool not in allowed
    if isinstance(value, int | float):
        fits = isinstance(value, int) and int in allowed or float in allowed
        return not fits or value <= 0
    return True


def type_name(hint: Any) -> str:
    """`int`, `int | None`: a type as a config's reader would write it."""
    return getattr(hint, "__name__", str(hint))


def from_hf_config(source: dict[str, Any], where: str) -> ModelConfig:
    """The ModelConfig computing what `source` (a `config.json`) does; NotImportableError
    names each key that stands in the way."""
    family = family_of(source, where)
    hints = typing.get_type_hints(ModelConfig)
    defaults = {**COMMON_DEFAULTS, **family.defaults}
    problems = [f"no {key}" for key in SHAPE_KEYS if key not in source]
    fields = {}
    for key, name in {**COMMON_FIELDS, **family.fields}.items():
        value = source.get(key, defaults.get(key))
        if key in source or key in defaults:
            if malformed(value, hints[name]):
                problems.append(f"{key} {value!r} (expected {type_name(hints[name])} above 0)")
            fields[name] = value
    for key, required in {**COMMON_REQUIRED, **family.required}.items():
        if source.get(key, required) != required:
            problems.append(f"{key} {source[key]!r} (Helox computes only {required!r})")
    if any(kind != "full_attention" for kind in source.get("layer_types") or []):
        problems.append(f"layer_types {source['layer_types']!r} (only full_attention)")
    rope, rope_key = rope_of(source)
    problems += rope_problems(rope, rope_key)
    if problems:
        raise NotImportableError(f"{where}: cannot import as a Helox model: " + "; ".join(problems))
    scaling_keys = ROPE_SCALING_KEYS[rope["rope_type"]]
    scaling = {"rope_type": rope["rope_type"], **{name: rope[name] for name in scaling_keys}}
    config = ModelConfig(
        **fields,
        rope_theta=float(rope["rope_theta"]),
        rope_scaling=scaling if scaling_keys else None,
        family=family.name,
        **family.switches,
    )
    try:
        check_config(config)
    except ValueError as error:
        raise NotImportableError(f"{where}: cannot import as a Helox model: {error}") from None
    return config


def export_problems(config: ModelConfig) -> list[str]:
    """Each setting of `config` that its family (`model.family`) cannot express, and why."""
    family = FAMILIES.get(config.family)
    if family is None:
        return [f"model.family {config.family!r} is none of {sorted(FAMILIES)}"]
    problems = []
    for name, (expressible, what) in EXPRESSIBLE.items():
        wanted, value = family.switches.get(name, expressible), getattr(config, name)
        if name not in family.fields.values() and value != wanted:
            what = what if value != expressible else f"{family.architecture} has {wanted!r}"
            problems.append(f"model.{name} is {value!r} ({what})")
    return problems


def to_hf_config(config: ModelConfig) -> dict[str, Any]:
    """The `config.json` keys of `config`'s family, which transformers loads as that family's
    class computing what Helox does; NotExportableError names what the family lacks."""
    problems = export_problems(config)
    if problems:
        raise NotExportableError(
            f"not expressible as model.family {config.family!r}: " + "; ".join(problems)
        )
    family = FAMILIES[config.family]
    values = {
        **dataclasses.asdict(config),
        "num_key_value_heads": kv_heads(config),
        "head_dim": head_dim(config),
        "intermediate_size": intermediate_size(config),
    }
    rope_type = (config.rope_scaling or {}).get("rope_type", "default")
    return {
        "architectures": [family.architecture],
        "model_type": family.model_type,
        **{key: values[name] for key, name in {**COMMON_FIELDS, **family.fields}.items()},
        **COMMON_REQUIRED,
        **family.required,
        # transformers 5 reads rope_parameters; 4 reads rope_theta and rope_scaling
        "rope_theta": config.rope_theta,
        "rope_scaling": config.rope_scaling,
        "rope_parameters": {
            "rope_type": rope_type,
            **(config.rope_scaling or {}),
            "rope_theta": config.rope_theta,
        },
        "attention_dropout": 0.0,
        "torch_dtype": "float32",
        "use_cache": True,
    }
