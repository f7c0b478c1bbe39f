"""The Llama-style model: names, switches, arithmetic, learning, and cached generation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from tiny_models import seeded_model, tiny_config
from torch import nn

from helox.model.config import ModelConfig, intermediate_size
from helox.model.network import GeluMLP, RMSNorm, SwiGLU
from helox.model.positions import (
    LearnedPositionEmbedding,
    RotaryEmbedding,
    apply_rotary,
    rope_inv_freq,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(**overrides) -> ModelConfig:
    return tiny_config(50, 64, **{"hidden_size": 32, **overrides})


def build(seed: int = 0, **overrides):
    return seeded_model(tiny(**overrides), seed)


def test_parameter_names_match_llama_for_causal_lm() -> None:
    model = build(num_layers=2, tie_word_embeddings=False)
    layer = [
        "input_layernorm.weight",
        "self_attn.q_proj.weight",
        "self_attn.k_proj.weight",
        "self_attn.v_proj.weight",
        "self_attn.o_proj.weight",
        "post_attention_layernorm.weight",
        "mlp.gate_proj.weight",
        "mlp.up_proj.weight",
        "mlp.down_proj.weight",
    ]
    expected = {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"}
    expected |= {f"model.layers.{i}.{name}" for i in range(2) for name in layer}
    assert set(model.state_dict()) == expected
    assert not any(isinstance(m, nn.Linear) and m.bias is not None for m in model.modules())


def test_tied_head_shares_the_embedding_and_is_counted_once() -> None:
    tied, untied = build(), build(tie_word_embeddings=False)
    assert tied.lm_head.weight is tied.model.embed_tokens.weight
    assert untied.lm_head.weight is not untied.model.embed_tokens.weight
    assert untied.num_parameters() - tied.num_parameters() == 50 * 32


def test_switches_pick_the_documented_components() -> None:
    llama = build()
    assert isinstance(llama.model.norm, RMSNorm)
    assert isinstance(llama.model.layers[0].mlp, SwiGLU)
    assert isinstance(llama.model.positions, RotaryEmbedding)

    gpt = build(use_rms_norm=False, use_swiglu=False, use_rope_embeddings=False)
    block = gpt.model.layers[0]
    assert isinstance(gpt.model.norm, nn.LayerNorm)
    assert isinstance(block.input_layernorm, nn.LayerNorm)
    assert isinstance(block.mlp, GeluMLP) and block.mlp.up_proj.out_features == 4 * 32
    assert isinstance(gpt.model.positions, LearnedPositionEmbedding)
    assert gpt.model.positions.wpe.weight.shape == (64, 32)
    assert "model.positions.wpe.weight" in gpt.state_dict()
    logits = gpt(torch.randint(0, 50, (2, 9))).logits
    assert logits.shape == (2, 9, 50)


def test_intermediate_size_defaults() -> None:
    assert intermediate_size(tiny(hidden_size=192)) == 512
    assert intermediate_size(tiny(hidden_size=100)) == 320
    assert intermediate_size(tiny(hidden_size=100, use_swiglu=False)) == 400
    assert intermediate_size(tiny(intermediate_size=77)) == 77


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="not divisible by model.num_attention_heads"):
        build(hidden_size=30)
    with pytest.raises(ValueError, match="not divisible by model.num_key_value_heads"):
        build(num_key_value_heads=3)
    with pytest.raises(ValueError, match="vocab_size is not set"):
        build(vocab_size=None)


def test_rmsnorm_computes_in_fp32_then_scales() -> None:
    norm = RMSNorm(8, eps=1e-5)
    norm.weight.data = torch.linspace(0.5, 2.0, 8)
    x = torch.randn(3, 8, dtype=torch.bfloat16)
    x32 = x.float()
    expected = norm.weight * (x32 / torch.sqrt((x32**2).mean(-1, keepdim=True) + 1e-5)).to(
        torch.bfloat16
    )
    assert torch.equal(norm(x), expected)


def test_rope_rotates_first_and_second_half_pairs() -> None:
    dim, theta = 8, 10000.0
    inv_freq = rope_inv_freq(dim, theta)
    assert inv_freq.dtype == torch.float32
    assert torch.allclose(inv_freq, torch.tensor([theta ** (-i / dim) for i in range(0, dim, 2)]))
    rotary = RotaryEmbedding(tiny(hidden_size=4 * dim, max_position_embeddings=16))
    position = 5
    _, rope = rotary(torch.zeros(1), torch.tensor([position]))
    q = torch.randn(1, 1, 1, dim)
    rotated, _ = apply_rotary(q, q, rope)
    half = dim // 2
    for i in range(half):
        angle = position * inv_freq[i]
        a, b = q[..., i], q[..., i + half]
        assert torch.allclose(rotated[..., i], a * torch.cos(angle) - b * torch.sin(angle))
        assert torch.allclose(rotated[..., i + half], b * torch.cos(angle) + a * torch.sin(angle))


def test_residual_projections_start_smaller() -> None:
    model = build(hidden_size=128, num_layers=8, num_attention_heads=4)
    std = 0.02 / math.sqrt(2 * 8)
    o_proj = model.model.layers[0].self_attn.o_proj.weight
    q_proj = model.model.layers[0].self_attn.q_proj.weight
    assert o_proj.std().item() == pytest.approx(std, rel=0.1)
    assert q_proj.std().item() == pytest.approx(0.02, rel=0.1)


def test_grouped_query_attention_equals_repeated_heads() -> None:
    gqa = build(num_key_value_heads=2)
    attn = gqa.model.layers[0].self_attn
    assert attn.k_proj.weight.shape == (2 * 8, 32) and attn.v_proj.weight.shape == (2 * 8, 32)
    mha = build(num_key_value_heads=4)
    state = gqa.state_dict()
    for name, tensor in state.items():
        if name.endswith(("k_proj.weight", "v_proj.weight")):
            state[name] = tensor.view(2, 8, 32).repeat_interleave(2, dim=0).reshape(32, 32)
    mha.load_state_dict(state)
    ids = torch.randint(0, 50, (2, 12))
    assert torch.allclose(gqa(ids).logits, mha(ids).logits, atol=1e-5)


@pytest.mark.parametrize("kv", [4, 2])
def test_fused_training_projections_give_the_eval_path_results_and_gradients(kv: int) -> None:
    """Training runs Q/K/V and gate/up as one matmul each; evaluation runs them one by one."""
    ids = torch.randint(0, 50, (2, 12))
    results = []
    for training in (True, False):
        model = build(num_key_value_heads=kv).train(training)
        out = model(ids, ids)
        out.loss.backward()
        results.append((out.logits, {n: p.grad for n, p in model.named_parameters()}))
    (fused_logits, fused_grads), (plain_logits, plain_grads) = results
    assert torch.allclose(fused_logits, plain_logits, atol=1e-5)
    assert fused_grads.keys() == plain_grads.keys()
    for name, grad in fused_grads.items():
        assert torch.allclose(grad, plain_grads[name], atol=1e-5), name
        assert grad.abs().sum() > 0, name


def test_dropout_acts_on_attention_residuals_and_embeddings_while_training_only() -> None:
    model = build(dropout=0.5)
    assert sum(isinstance(m, nn.Dropout) for m in model.modules()) == 1 + 2
    ids = torch.randint(0, 50, (2, 12))
    model.train()
    assert not torch.allclose(model(ids).logits, model(ids).logits)
    model.eval()
    plain = build(dropout=0.0).eval()
    assert not any(isinstance(m, nn.Dropout) for m in plain.modules())
    plain.load_state_dict(model.state_dict())
    assert torch.equal(model(ids).logits, plain(ids).logits)


def test_attention_is_causal() -> None:
    model = build()
    ids = torch.randint(0, 50, (1, 10))
    changed = ids.clone()
    changed[0, 7] = (ids[0, 7] + 1) % 50
    a, b = model(ids).logits, model(changed).logits
    assert torch.allclose(a[:, :7], b[:, :7], atol=1e-6)
    assert not torch.allclose(a[:, 7:], b[:, 7:])


def test_loss_is_mean_cross_entropy_over_labels_not_ignored() -> None:
    model = build()
    ids = torch.randint(0, 50, (2, 6))
    labels = torch.randint(0, 50, (2, 6))
    labels[0, :3] = -100
    out = model(ids, labels)
    keep = labels != -100
    expected = F.cross_entropy(out.logits[keep], labels[keep])
    assert torch.allclose(out.loss, expected)
    assert model(ids).loss is None


def test_tiny_model_overfits_a_repeated_sequence() -> None:
    model = build(seed=1)
    pattern = torch.tensor([5, 17, 3, 42, 8, 29, 11, 36])
    stream = pattern.repeat(5)
    ids, labels = stream[:-1].repeat(4, 1), stream[1:].repeat(4, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = model(ids, labels).loss.item()
    for _ in range(60):
        loss = model(ids, labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert first > 3.5
    assert loss.item() < 0.1


def test_gradient_checkpointing_gives_the_same_gradients() -> None:
    ids = torch.randint(0, 50, (2, 10))
    grads = []
    for enabled in (False, True):
        model = build()
        model.set_gradient_checkpointing(enabled)
        model(ids, ids).loss.backward()
        grads.append([p.grad for p in model.parameters()])
    for plain, recomputed in zip(*grads, strict=True):
        assert torch.allclose(plain, recomputed, atol=1e-6)


def test_flops_per_token_counts_weights_and_attention() -> None:
    model = build(use_rope_embeddings=False, tie_word_embeddings=False)
    matmul = model.num_parameters() - 50 * 32 - 64 * 32
    assert model.num_parameters(exclude_embeddings=True) == matmul
    assert model.flops_per_token(16) == 6 * matmul + 12 * 2 * 32 * 16


def naive_greedy(model, ids: torch.Tensor, steps: int) -> torch.Tensor:
    for _ in range(steps):
        next_ids = model(ids).logits[:, -1].argmax(-1, keepdim=True)
        ids = torch.cat([ids, next_ids], dim=1)
    return ids


@pytest.mark.parametrize(
    "overrides",
    [{}, {"num_key_value_heads": 2}, {"use_rope_embeddings": False, "use_rms_norm": False}],
)
def test_greedy_with_cache_equals_greedy_without(overrides: dict) -> None:
    model = build(seed=3, **overrides).eval()
    prompt = torch.randint(0, 50, (3, 7))
    with torch.no_grad():
        expected = naive_greedy(model, prompt, 20)
    assert torch.equal(model.generate(prompt, 20, temperature=0.0), expected)


def test_generate_samples_reproducibly_and_stops_at_eos() -> None:
    model = build(seed=4)
    prompt = torch.randint(0, 50, (2, 5))
    runs = [
        model.generate(prompt, 15, top_k=10, top_p=0.9, generator=torch.Generator().manual_seed(9))
        for _ in range(2)
    ]
    assert torch.equal(runs[0], runs[1]) and runs[0].shape == (2, 20)
    assert torch.equal(runs[0][:, :5], prompt)
    greedy = model.generate(prompt, 15, temperature=0.0)
    assert torch.equal(model.generate(prompt, 15, top_k=1), greedy)

    eos = int(greedy[0, 7])
    stopped = model.generate(prompt, 15, temperature=0.0, eos_id=eos)
    first_eos = []
    for row_stopped, row_greedy in zip(stopped, greedy, strict=True):
        hits = (row_greedy[5:] == eos).nonzero()
        if len(hits):
            end = 5 + int(hits[0])
            first_eos.append(end)
            assert torch.equal(row_stopped[: end + 1], row_greedy[: end + 1])
            assert (row_stopped[end:] == eos).all()
        else:
            assert torch.equal(row_stopped, row_greedy[: stopped.size(1)])
    assert first_eos[0] <= 7
    all_stopped = len(first_eos) == len(greedy)
    assert stopped.size(1) == (max(first_eos) + 1 if all_stopped else 20)


def test_generate_refuses_more_positions_than_the_model_has() -> None:
    model = build()
    with pytest.raises(ValueError, match="exceeds model.max_position_embeddings 64"):
        model.generate(torch.zeros(1, 60, dtype=torch.long), 10)


def test_qk_norm_normalises_each_heads_queries_and_keys() -> None:
    model = build(qk_norm=True)
    attention = model.model.layers[0].self_attn
    assert isinstance(attention.q_norm, RMSNorm) and attention.q_norm.weight.shape == (8,)
    assert "model.layers.0.self_attn.k_norm.weight" in dict(model.named_parameters())
    assert not any(
        "_norm" in name and "self_attn" in name for name, _ in build().named_parameters()
    )
    queries = torch.randn(2, 4, 5, 8) * 10
    assert torch.allclose(attention.q_norm(queries).pow(2).mean(-1), torch.ones(2, 4, 5), atol=1e-4)


def test_qkv_biases_start_at_zero_and_survive_the_fused_projection() -> None:
    model = build(qkv_bias=True)
    biases = {name: p for name, p in model.named_parameters() if name.endswith("bias")}
    assert sorted({name.split(".")[-2] for name in biases}) == ["k_proj", "q_proj", "v_proj"]
    assert all(not p.any() for p in biases.values())
    with torch.no_grad():
        for param in biases.values():
            param.normal_()
    ids = torch.randint(0, 50, (2, 6))
    fused = model.train()(ids).logits
    torch.testing.assert_close(fused, model.eval()(ids).logits)
    with torch.no_grad():
        biases["model.layers.0.self_attn.v_proj.bias"].zero_()
    assert not torch.allclose(model.train()(ids).logits, fused)


def test_logit_softcap_squashes_the_logits_into_the_cap() -> None:
    ids = torch.randint(0, 50, (2, 6))
    plain, capped = build(), build(logit_softcap=0.05)
    capped.load_state_dict(plain.state_dict())
    raw, soft = plain(ids).logits, capped(ids).logits
    assert soft.abs().max() <= 0.05
    assert torch.allclose(soft, 0.05 * torch.tanh(raw / 0.05))
