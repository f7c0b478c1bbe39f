"""Every final folder is a Hugging Face LlamaForCausalLM checkpoint with its tokenizer."""

from __future__ import annotations

import pytest
import torch
from tiny_models import seeded_model, tiny_config
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

from helox.common.io import read_json
from helox.model.config import ModelConfig
from helox.model.folder import NOT_LLAMA_KEY, NotLlamaError, llama_config, load_final, save_final
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
    model = seeded_model(model_config)
    folder = tmp_path / stage
    save_final(folder, model, model_config, tokenizer_path, {"stage": stage})
    return folder, model.eval()


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"num_key_value_heads": 2, "rope_theta": 500.0, "norm_eps": 1e-6},
        {"tie_word_embeddings": False, "intermediate_size": 96, "num_attention_heads": 2},
    ],
    ids=["default", "gqa-theta-eps", "untied-width"],
)
def test_transformers_logits_match_helox(tmp_path, tokenizer_path, overrides):
    folder, model = saved_folder(tmp_path, tokenizer_path, config(**overrides), "pretrain")
    hf_model = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
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
    "switch, named",
    [
        ("use_swiglu", "GELU MLP"),
        ("use_rms_norm", "LayerNorm"),
        ("use_rope_embeddings", "learned positions"),
        ("qk_norm", "normalise queries and keys"),
        ("logit_softcap", "cap its logits"),
    ],
)
def test_a_model_llama_cannot_express_is_not_exported_as_one(
    tmp_path, tokenizer_path, switch, named
):
    flipped = {"qk_norm": True, "logit_softcap": 30.0}.get(switch, False)
    model_config = config(**{switch: flipped})
    with pytest.raises(NotLlamaError, match=f"model.{switch} .*{named}"):
        llama_config(model_config, load_tokenizer(tokenizer_path))
    folder, model = saved_folder(tmp_path, tokenizer_path, model_config, "pretrain")
    config_json = read_json(folder / "config.json")
    assert "model_type" not in config_json and named in config_json[NOT_LLAMA_KEY]
    with pytest.raises(ValueError):
        AutoConfig.from_pretrained(folder)
    loaded, _ = load_final(folder)
    ids = torch.arange(20)[None]
    assert torch.equal(loaded(ids).logits, model(ids).logits)


def test_auto_model_finds_llama(tmp_path, tokenizer_path):
    folder, _ = saved_folder(tmp_path, tokenizer_path, config(), "pretrain")
    assert type(AutoModelForCausalLM.from_pretrained(folder)) is LlamaForCausalLM
