"""Every final folder is a Hugging Face checkpoint of its family (LlamaForCausalLM unless
`model.family` says another) with its tokenizer."""

from __future__ import annotations

import re

import pytest
import torch
from tiny_models import seeded_model, tiny_config
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

from helox.common.io import read_json
from helox.model.config import ModelConfig
from helox.model.families import NotExportableError, to_hf_config
from helox.model.folder import NOT_HF_KEY, load_final, save_final
from helox.model.network import HeloxLM
from helox.tokens.chat import render_prompt
from helox.tokens.tokenizer import TokenizerConfig, build_tokenizer
from helox.tokens.vocab import load_tokenizer

CONVERSATION = [
    {"role": "system", "content": "You write Python."},
    {"role": "user", "content": "Reverse a list."},
    {"role": "assistant", "content": "return items[::-1]"},
    {"role": "user", "content": "And a string?"},
]
TEXTS = [
    "def f(x):\n    return  x + 1\n",
    " leading space and\ttabs\t\n\n\nblank lines",
    "héllo wörld 12345, 日本語 and 🎉",
]


@pytest.fixture(scope="module")
def tokenizer_path(doc_parts, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tok")
    build_tokenizer(doc_parts, folder, TokenizerConfig(vocab_size=600, eval_docs=5))
    return folder / "spm.model"


def config(**overrides) -> ModelConfig:
    return tiny_config(600, 128, initializer_range=0.2, **overrides)


def saved_folder(tmp_path, tokenizer_path, model_config: ModelConfig, stage: str):
    return save_model(tmp_path, tokenizer_path, seeded_model(model_config), stage)


def save_model(tmp_path, tokenizer_path, model: HeloxLM, stage: str):
    folder = tmp_path / stage
    save_final(folder, model, model.config, tokenizer_path, {"stage": stage})
    return folder, model.eval()


LLAMA3_SCALING = {
    "rope_type": "llama3",
    "factor": 4.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 32,
}


@pytest.mark.parametrize(
    ("overrides", "hf_class"),
    [
        ({}, "LlamaForCausalLM"),
        ({"num_key_value_heads": 2, "rope_theta": 500.0, "norm_eps": 1e-6}, "LlamaForCausalLM"),
        (
            {"tie_word_embeddings": False, "intermediate_size": 96, "num_attention_heads": 2},
            "LlamaForCausalLM",
        ),
        ({"head_dim": 24, "rope_scaling": LLAMA3_SCALING}, "LlamaForCausalLM"),
        ({"family": "qwen3", "qk_norm": True, "head_dim": 32}, "Qwen3ForCausalLM"),
        ({"family": "qwen2", "qkv_bias": True, "num_key_value_heads": 2}, "Qwen2ForCausalLM"),
        ({"family": "mistral", "tie_word_embeddings": False}, "MistralForCausalLM"),
    ],
    ids=["default", "gqa-theta-eps", "untied-width", "llama3", "qwen3", "qwen2", "mistral"],
)
def test_transformers_logits_match_helox(tmp_path, tokenizer_path, overrides, hf_class):
    model = seeded_model(config(**overrides))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias"):  # Helox starts them at zero, which would hide a mix-up
                param.normal_(0.0, 0.2)
    folder, model = save_model(tmp_path, tokenizer_path, model, "pretrain")
    hf_model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    assert type(hf_model).__name__ == hf_class
    ids = torch.randint(0, 600, (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = model(ids).logits, hf_model(ids).logits
    assert ours.abs().max() > 1.0, "logits too flat to tell the implementations apart"
    torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=1e-4)


def test_transformers_tokenizer_and_chat_template_match_helox(tmp_path, tokenizer_path):
    folder, _ = saved_folder(tmp_path, tokenizer_path, config(), "sft")
    processor = load_tokenizer(folder)
    hf_tokenizer = AutoTokenizer.from_pretrained(folder)
    for text in TEXTS:
        ids = hf_tokenizer.encode(text, add_special_tokens=False)
        assert ids == processor.encode(text)
        assert hf_tokenizer.decode(ids) == text
    rendered = hf_tokenizer.apply_chat_template(
        CONVERSATION, add_generation_prompt=True, tokenize=True, return_dict=True
    )["input_ids"]
    assert rendered == render_prompt(CONVERSATION, processor)
    assert read_json(folder / "generation_config.json")["eos_token_id"] == [2, 7]


@pytest.mark.parametrize(
    "changes, named",
    [
        ({"use_swiglu": False}, "model.use_swiglu is False (a GELU MLP"),
        ({"use_rms_norm": False}, "model.use_rms_norm is False (LayerNorm"),
        ({"use_rope_embeddings": False}, "model.use_rope_embeddings is False (learned positions"),
        ({"qk_norm": True}, "model.qk_norm is True (per-head q/k norms, which only Qwen3 has)"),
        ({"logit_softcap": 30.0}, "model.logit_softcap is 30.0 (no family caps its logits)"),
        ({"family": "qwen3"}, "model.qk_norm is False (Qwen3ForCausalLM has True)"),
        ({"family": "qwen2", "sliding_window": 64}, "model.sliding_window is 64 (a sliding"),
    ],
)
def test_a_model_its_family_cannot_express_is_not_exported_as_one(
    tmp_path, tokenizer_path, changes, named
):
    model_config = config(**changes)
    with pytest.raises(NotExportableError, match=re.escape(named)):
        to_hf_config(model_config)
    folder, model = saved_folder(tmp_path, tokenizer_path, model_config, "pretrain")
    config_json = read_json(folder / "config.json")
    assert "model_type" not in config_json and named in config_json[NOT_HF_KEY]
    with pytest.raises(ValueError):
        AutoConfig.from_pretrained(folder)
    loaded, _ = load_final(folder)
    ids = torch.arange(20)[None]
    assert torch.equal(loaded(ids).logits, model(ids).logits)


def test_auto_model_finds_llama(tmp_path, tokenizer_path):
    folder, _ = saved_folder(tmp_path, tokenizer_path, config(), "pretrain")
    assert type(AutoModelForCausalLM.from_pretrained(folder)) is LlamaForCausalLM
