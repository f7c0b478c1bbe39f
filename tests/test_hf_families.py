"""Open models' architectures in and out: a tiny random checkpoint per family, built by
transformers here, imports into Helox and exports back as the same class with the same logits
and the same greedy generations; what Helox cannot compute the same way is refused by name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    LlamaConfig,
    MistralConfig,
    PreTrainedModel,
    Qwen2Config,
    Qwen3Config,
)

from helox.common.io import read_json
from helox.model import weight_files
from helox.model.config import ModelConfig, head_dim
from helox.model.folder import load_final
from helox.model.import_hf import NotImportableError, import_hf_folder
from helox.model.positions import rope_frequencies
from helox.model.weight_files import ModelTooLargeError, WeightFileError
from helox.train.config import TrainingConfig
from helox.train.loop import Trainer

VOCAB = 512
SHAPE = {
    "vocab_size": VOCAB,
    "hidden_size": 64,
    "intermediate_size": 96,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
    "rms_norm_eps": 1e-5,
}
# Each family in the shape its public models have, at a tiny size.
SOURCES = {
    # Llama 3.2: llama3 RoPE (original 64 positions put frequencies in all three of its bands),
    # heads 24 wide where hidden/heads is 16, tied embeddings
    "llama3": LlamaConfig(
        **SHAPE,
        head_dim=24,
        tie_word_embeddings=True,
        rope_parameters={
            "rope_type": "llama3",
            "rope_theta": 500_000.0,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64,
        },
    ),
    # Mistral 7B v0.2+: untied, no sliding window
    "mistral": MistralConfig(**SHAPE, sliding_window=None, tie_word_embeddings=False),
    # Mistral 7B v0.1: a window, here as long as the positions
    "mistral-window": MistralConfig(**SHAPE, sliding_window=256, tie_word_embeddings=False),
    # Qwen2.5: q/k/v biases, RoPE θ 1e6, untied (the 7B) embeddings
    "qwen2": Qwen2Config(
        **SHAPE,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
        tie_word_embeddings=False,
        use_sliding_window=False,
    ),
    # Qwen3: per-head q/k RMSNorm, heads twice hidden/heads wide (128 over 1024/16), tied
    "qwen3": Qwen3Config(
        **SHAPE,
        head_dim=32,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
        tie_word_embeddings=True,
        use_sliding_window=False,
    ),
}
FAMILY_CLASSES = {
    "llama3": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "mistral-window": "MistralForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
}


def random_source(config, seed: int = 0) -> PreTrainedModel:
    """transformers' model of `config` with every weight drawn at random, norms and biases
    included (transformers starts them at one and zero, which would hide a mix-up)."""
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            centre = 1.0 if "norm" in name else 0.0
            param.copy_(centre + 0.1 * torch.randn(param.shape, generator=generator))
    return model


def save_source(model: PreTrainedModel, folder: Path, tokenizer: Path, **options) -> Path:
    model.save_pretrained(folder, **options)
    shutil.copyfile(tokenizer, folder / "tokenizer.model")
    return folder


@pytest.fixture(scope="module")
def imported(spm_model, tmp_path_factory) -> dict[str, tuple[PreTrainedModel, Path, Path]]:
    """Each family's source model, its folder, and the Helox folder imported from it."""
    root = tmp_path_factory.mktemp("families")
    built = {}
    for name, config in SOURCES.items():
        source = random_source(config)
        folder = save_source(source, root / name, spm_model)
        built[name] = (source, folder, import_hf_folder(folder, root / f"{name}-helox"))
    return built


IDS = torch.randint(0, VOCAB, (2, 40), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", SOURCES)
def test_import_then_export_gives_the_source_logits_and_class(imported, name) -> None:
    source, _, folder = imported[name]
    model, config = load_final(folder)
    exported = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    assert type(exported).__name__ == FAMILY_CLASSES[name] == type(source).__name__
    assert type(AutoConfig.from_pretrained(folder)) is type(source.config)
    assert read_json(folder / "config.json")["helox"]["family"] == config.family
    with torch.no_grad():
        expected = source(IDS).logits
        ours, theirs = model(IDS).logits, exported(IDS).logits
    assert expected.abs().max() > 1.0, "logits too flat to tell the implementations apart"
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(theirs, expected, atol=1e-4, rtol=0)


def test_each_family_sets_its_switches(imported) -> None:
    configs = {name: load_final(folder)[1] for name, (_, _, folder) in imported.items()}
    switches = {
        name: (c.family, head_dim(c), c.qkv_bias, c.qk_norm, c.tie_word_embeddings)
        for name, c in configs.items()
    }
    assert switches == {
        "llama3": ("llama", 24, False, False, True),
        "mistral": ("mistral", 16, False, False, False),
        "mistral-window": ("mistral", 16, False, False, False),
        "qwen2": ("qwen2", 16, True, False, False),
        "qwen3": ("qwen3", 32, False, True, True),
    }
    assert configs["mistral-window"].sliding_window == 256
    assert configs["qwen2"].rope_theta == 1_000_000.0
    source = imported["llama3"][0]
    plain = rope_frequencies(ModelConfig(**{**vars(configs["llama3"]), "rope_scaling": None}))
    scaled = rope_frequencies(configs["llama3"])
    torch.testing.assert_close(scaled, source.model.rotary_emb.inv_freq, atol=0, rtol=1e-6)
    bands = {"kept": scaled == plain, "slowed": torch.isclose(scaled, plain / 8)}
    assert bands["kept"].any() and bands["slowed"].any()
    assert not (bands["kept"] | bands["slowed"]).all(), "no frequency in the blended band"


@pytest.mark.parametrize("name", SOURCES)
def test_greedy_generation_equals_transformers(imported, name) -> None:
    source, _, folder = imported[name]
    model, _ = load_final(folder)
    prompt = IDS[:1, :12]
    ours = model.generate(prompt, max_new_tokens=16, temperature=0)
    theirs = source.generate(
        prompt, max_new_tokens=16, do_sample=False, eos_token_id=None, pad_token_id=0
    )
    assert ours.tolist() == theirs.tolist()


def test_a_sharded_bfloat16_source_loads_cast_to_float32(spm_model, tmp_path) -> None:
    source = random_source(SOURCES["qwen3"], seed=2).to(torch.bfloat16)
    folder = save_source(source, tmp_path / "hf", spm_model, max_shard_size="100KB")
    shards = sorted(path.name for path in folder.glob("*.safetensors"))
    assert len(shards) > 2 and (folder / "model.safetensors.index.json").is_file()
    model, _ = load_final(import_hf_folder(folder, tmp_path / "helox"))
    assert {t.dtype for t in model.state_dict().values()} == {torch.float32}
    reference = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(IDS).logits, reference(IDS).logits, atol=1e-4, rtol=0)


@pytest.fixture
def source_folder(imported, tmp_path) -> Path:
    """A copy of the Llama 3 source, for a test to spoil."""
    return Path(shutil.copytree(imported["llama3"][1], tmp_path / "hf"))


def edit_config(folder: Path, **changes) -> None:
    config = {**read_json(folder / "config.json"), **changes}
    (folder / "config.json").write_text(
        json.dumps({k: v for k, v in config.items() if v is not ...})
    )


LLAMA3_SCALING = {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0}


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"architectures": ["Gemma2ForCausalLM"]}, r"architectures \['Gemma2ForCausalLM'\]"),
        ({"architectures": ["Phi3ForCausalLM"]}, "architectures"),
        ({"architectures": ["Olmo2ForCausalLM"]}, "architectures"),
        ({"model_type": "qwen3"}, "model_type 'qwen3'"),
        ({"rope_parameters": {"rope_type": "yarn", "factor": 4.0}}, "rope_parameters.rope_type"),
        ({"rope_parameters": {"rope_type": "llama3", "factor": "8"}}, "rope_parameters.factor"),
        ({"rope_scaling": {"type": "linear", "factor": 2.0}}, "rope_scaling.rope_type 'linear'"),
        ({"partial_rotary_factor": 0.5}, "partial_rotary_factor 0.5"),
        ({"mlp_bias": True}, "mlp_bias True"),
        ({"attention_bias": True}, "attention_bias True"),
        ({"hidden_act": "gelu"}, "hidden_act 'gelu'"),
        ({"pretraining_tp": 2}, "pretraining_tp 2"),
        ({"layer_types": ["sliding_attention", "full_attention"]}, "layer_types"),
        ({"hidden_size": ...}, "no hidden_size"),
        ({"hidden_size": "64"}, "hidden_size '64' .expected int"),
        ({"num_key_value_heads": 0}, "num_key_value_heads 0"),
        ({"tie_word_embeddings": "yes"}, "tie_word_embeddings 'yes'"),
    ],
)
def test_what_helox_cannot_compute_the_same_way_is_refused_naming_the_key(
    source_folder, tmp_path, changes, named
) -> None:
    edit_config(source_folder, **changes)
    with pytest.raises(NotImportableError, match=named):
        import_hf_folder(source_folder, tmp_path / "helox")
    assert not (tmp_path / "helox").exists()


@pytest.mark.parametrize(
    ("family", "changes", "named"),
    [
        ("Qwen2ForCausalLM", {"model_type": "qwen2", "use_sliding_window": True}, "use_sliding"),
        ("Qwen3ForCausalLM", {"model_type": "qwen3", "attention_bias": True}, "attention_bias"),
    ],
)
def test_a_qwen_sliding_window_or_bias_is_refused(
    source_folder, tmp_path, family, changes, named
) -> None:
    edit_config(source_folder, architectures=[family], **changes)
    with pytest.raises(NotImportableError, match=named):
        import_hf_folder(source_folder, tmp_path / "helox")


def test_the_hubs_older_rope_keys_read_as_transformers_reads_them(
    imported, source_folder, tmp_path
) -> None:
    scaling = {"type": "llama3", **LLAMA3_SCALING, "original_max_position_embeddings": 64}
    edit_config(source_folder, rope_parameters=..., rope_theta=500_000, rope_scaling=scaling)
    _, config = load_final(import_hf_folder(source_folder, tmp_path / "helox"))
    _, expected = load_final(imported["llama3"][2])
    assert config == expected


def spoil_tensors(folder: Path, change) -> None:
    tensors = load_file(folder / "model.safetensors")
    change(tensors)
    save_file(tensors, folder / "model.safetensors")


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda t: t.pop("model.layers.1.mlp.up_proj.weight"), r"missing \['model.layers.1.mlp"),
        (lambda t: t.update(extra=torch.zeros(2)), r"unexpected \['extra'\]"),
        (
            lambda t: t.update({"model.norm.weight": torch.ones(65)}),
            r"wrong shape \['model.norm.weight \[65\] \(expected \[64\]\)'\]",
        ),
    ],
    ids=["missing", "extra", "misshapen"],
)
def test_tensors_that_do_not_fit_the_config_are_named(source_folder, tmp_path, change, named):
    spoil_tensors(source_folder, change)
    with pytest.raises(NotImportableError, match=named):
        import_hf_folder(source_folder, tmp_path / "helox")


def test_pickled_weights_are_refused_and_never_loaded(source_folder, tmp_path, monkeypatch):
    (source_folder / "model.safetensors").unlink()
    (source_folder / "pytorch_model.bin").write_bytes(b"\x80\x04not to be unpickled")
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load was called"))
    with pytest.raises(WeightFileError, match="only pytorch_model.bin.*never loads pickled"):
        import_hf_folder(source_folder, tmp_path / "helox")


def test_a_source_that_is_not_a_folder_or_has_no_readable_config_is_refused(
    source_folder, tmp_path
) -> None:
    with pytest.raises(NotImportableError, match="model.safetensors: not a folder"):
        import_hf_folder(source_folder / "model.safetensors", tmp_path / "helox")
    (source_folder / "config.json").write_text('{"architectures": ["LlamaForCausalLM"],\n')
    with pytest.raises(ValueError, match=r"config.json, line 2, column 1: not valid JSON"):
        import_hf_folder(source_folder, tmp_path / "helox")
    (source_folder / "config.json").unlink()
    with pytest.raises(ValueError, match=r"config.json: no such config file"):
        import_hf_folder(source_folder, tmp_path / "helox")


def cut_after_header(path: Path) -> None:
    """Keep only `path`'s 8-byte length and JSON header: reading any tensor would fail."""
    data = path.read_bytes()
    path.write_bytes(data[: 8 + int.from_bytes(data[:8], "little")])


def test_a_model_that_would_not_fit_memory_is_refused_before_its_weights_are_read(
    imported, source_folder, tmp_path, monkeypatch
) -> None:
    cut_after_header(source_folder / "model.safetensors")
    monkeypatch.setattr(weight_files, "available_memory", lambda device: 100_000)
    # tied: the embeddings once, the norms, and the projections at float32
    per_layer = 64 * (4 * 24 + 2 * 2 * 24) + 4 * 24 * 64 + 3 * 64 * 96 + 2 * 64
    estimate = 4 * (VOCAB * 64 + 2 * per_layer + 64)
    message = (
        rf"{source_folder}: the model's weights need {estimate:,} bytes \(0.4 MiB\) as "
        r"float32 .*, and cpu has 100,000 bytes \(0.1 MiB\) available \(MemAvailable\)"
    )
    with pytest.raises(ModelTooLargeError, match=message):
        import_hf_folder(source_folder, tmp_path / "helox")
    with pytest.raises(ModelTooLargeError, match="MemAvailable"):
        load_final(imported["qwen3"][2])


def test_available_memory_is_memavailable_and_free_device_memory(imported, monkeypatch) -> None:
    meminfo = weight_files.MEMINFO.read_text()
    line = next(line for line in meminfo.splitlines() if line.startswith("MemAvailable:"))
    available = weight_files.available_memory(torch.device("cpu"))
    assert abs(available - int(line.split()[1]) * 1024) < 2**30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (100_000, 80 * 2**30))
    folder = imported["qwen3"][2]
    tensors = weight_files.folder_tensors(folder).values()
    with pytest.raises(ModelTooLargeError, match=r"cuda has 100,000 bytes .* \(free device memory"):
        weight_files.check_fits(folder, tensors, "cuda")


def test_a_mistral_window_shorter_than_its_positions_bounds_every_sequence(
    spm_model, tmp_path
) -> None:
    source = random_source(MistralConfig(**SHAPE, sliding_window=24), seed=3)
    folder = import_hf_folder(save_source(source, tmp_path / "hf", spm_model), tmp_path / "helox")
    model, config = load_final(folder)
    assert config.sliding_window == 24
    with torch.no_grad():
        within = IDS[:, :24]
        torch.testing.assert_close(model(within).logits, source(within).logits, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="exceeds model.sliding_window 24"):
        model.generate(IDS[:1, :20], max_new_tokens=8, temperature=0)
    with pytest.raises(ValueError, match="seq_len 32 exceeds the model's sliding_window 24"):
        Trainer(model, None, None, TrainingConfig(seq_len=32), None, tmp_path, "")
    assert read_json(folder / "config.json")["sliding_window"] == 24
