"""Packed rows through FlexAttention: the same logits as the dense-mask path, and as each
sequence alone; unpacked rows keep SDPA's causal kernel."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tiny_models import seeded_model, tiny_config
from torch.nn.attention.flex_attention import BlockMask

from helox.model.attention import packed_attention_mask, segment_block_mask

VOCAB = 60

pytestmark = pytest.mark.usefixtures("one_thread")


def assert_close_to_rounding(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal up to fp32 rounding: within 1e-5 of the largest magnitude in `expected`."""
    assert (actual - expected).abs().max() <= 1e-5 * expected.abs().max()


def build(seed: int = 0, **overrides):
    # Width 64 in 4 heads: Inductor's FlexAttention kernel needs heads of at least 16.
    fields = {"num_key_value_heads": 2, "initializer_range": 0.5, **overrides}
    return seeded_model(tiny_config(VOCAB, 512, **fields), seed).eval()


def packed_row(lengths: list[int], width: int) -> tuple[torch.Tensor, ...]:
    """One row of sequences of `lengths`, padded to `width` with segment -1: (ids, positions,
    segments, each sequence's ids)."""
    sequences = [torch.randint(0, VOCAB, (n,)) for n in lengths]
    padding = width - sum(lengths)
    ids = torch.cat([*sequences, torch.zeros(padding, dtype=torch.long)])
    positions = torch.cat([torch.arange(n) for n in lengths] + [torch.arange(padding)])
    segments = torch.cat(
        [torch.full((n,), i) for i, n in enumerate(lengths)] + [torch.full((padding,), -1)]
    )
    return ids, positions, segments, sequences


# Rows of 300 tokens span three 128-token tiles; sequences cross tile edges and one is padded.
ROWS = ([150, 100, 50], [40, 200, 20])


def packed_batch() -> tuple[torch.Tensor, dict[str, torch.Tensor], list[list[torch.Tensor]]]:
    torch.manual_seed(1)
    rows = [packed_row(lengths, 300) for lengths in ROWS]
    ids = torch.stack([row[0] for row in rows])
    extra = {
        "position_ids": torch.stack([row[1] for row in rows]),
        "segment_ids": torch.stack([row[2] for row in rows]),
    }
    return ids, extra, [row[3] for row in rows]


@pytest.mark.parametrize("overrides", [{}, {"qk_norm": True}, {"num_key_value_heads": 4}])
def test_flex_path_gives_the_dense_mask_paths_logits(overrides: dict) -> None:
    model = build(**overrides)
    ids, extra, _ = packed_batch()
    with torch.no_grad():
        model.set_attention_kernel("sdpa")
        dense = model(ids, ids, **extra)
        model.set_attention_kernel("flex")
        flex = model(ids, ids, **extra)
    assert_close_to_rounding(flex.logits, dense.logits)
    assert_close_to_rounding(flex.loss, dense.loss)


def test_flex_path_scores_each_sequence_as_it_scores_alone() -> None:
    model = build(seed=2)
    model.set_attention_kernel("flex")
    ids, extra, sequences = packed_batch()
    with torch.no_grad():
        packed = model(ids, **extra).logits
        leaky = model(ids).logits
    for row, row_sequences in enumerate(sequences):
        offset = 0
        for sequence in row_sequences:
            with torch.no_grad():
                alone = model(sequence[None]).logits[0]
            span = slice(offset, offset + len(sequence))
            assert_close_to_rounding(packed[row, span], alone)
            offset = span.stop
    second = ROWS[0][0]
    assert (leaky[0, second : second + 5] - packed[0, second : second + 5]).abs().max() > 0.1


def test_block_mask_skips_tiles_between_documents() -> None:
    """Two 128-token documents: the lower-left tile (second document's queries, first
    document's keys) is skipped, and each document's own diagonal tile is the only one run."""
    segments = torch.cat([torch.zeros(128), torch.ones(128)]).long()[None]
    block_mask = segment_block_mask(segments)
    assert block_mask.kv_num_blocks.tolist() == [[[1, 1]]]
    assert block_mask.kv_indices[0, 0, :, 0].tolist() == [0, 1]
    assert block_mask.full_kv_num_blocks.tolist() == [[[0, 0]]]
    one_document = segment_block_mask(torch.zeros(1, 256, dtype=torch.long))
    assert one_document.kv_num_blocks.tolist() == [[[1, 1]]]
    assert one_document.full_kv_num_blocks.tolist() == [[[0, 1]]], "tile (1, 0) needs no mask"


def test_kernel_choice() -> None:
    segments = torch.zeros(1, 8, dtype=torch.long)
    assert isinstance(packed_attention_mask(segments, "auto", 0.0, 16), torch.Tensor), "CPU"
    assert isinstance(packed_attention_mask(segments, "flex", 0.0, 16), BlockMask)
    assert isinstance(packed_attention_mask(segments, "sdpa", 0.0, 16), torch.Tensor)
    with pytest.raises(ValueError, match="no attention dropout"):
        packed_attention_mask(segments, "flex", 0.1, 16)
    with pytest.raises(ValueError, match="at least 16 wide, got 8"):
        packed_attention_mask(segments, "flex", 0.0, 8)
    with pytest.raises(ValueError, match="unknown attention kernel 'fast'"):
        build().set_attention_kernel("fast")


def test_unpacked_rows_use_sdpa_causal_without_a_mask(monkeypatch) -> None:
    calls = []
    sdpa = F.scaled_dot_product_attention

    def recording_sdpa(*args, **kwargs):
        calls.append((kwargs["attn_mask"], kwargs["is_causal"], kwargs["enable_gqa"]))
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", recording_sdpa)
    model = build()
    model.set_attention_kernel("flex")
    model(torch.randint(0, VOCAB, (2, 16)))
    assert calls == [(None, True, True)] * 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="FlexAttention trains on CUDA only")
def test_flex_training_step_matches_the_dense_mask_on_cuda() -> None:
    """bf16 autocast, compiled model: FlexAttention's loss and gradients match the dense
    mask's within bf16 rounding."""
    ids, extra, _ = packed_batch()
    ids, extra = ids.cuda(), {k: v.cuda() for k, v in extra.items()}
    head_size = build().model.head_size
    assert isinstance(
        packed_attention_mask(extra["segment_ids"], "auto", 0.0, head_size), BlockMask
    )
    assert isinstance(packed_attention_mask(extra["segment_ids"], "auto", 0.0, 8), torch.Tensor)
    results = []
    for kernel in ("sdpa", "auto"):
        model = build(seed=3, initializer_range=0.02).cuda().train()
        model.set_attention_kernel(kernel)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = torch.compile(model)(ids, ids, **extra).loss
        loss.backward()
        results.append((loss.detach(), [p.grad.float() for p in model.parameters()]))
    (dense_loss, dense_grads), (flex_loss, flex_grads) = results
    torch.testing.assert_close(flex_loss, dense_loss, rtol=2e-2, atol=2e-2)
    for flex, dense in zip(flex_grads, dense_grads, strict=True):
        assert (flex - dense).norm() <= 2e-2 * dense.norm() + 1e-6
