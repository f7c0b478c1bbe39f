from __future__ import annotations

import numpy as np
import pyarrow as pa

from helox.common.io import iter_jsonl
from helox.tokens.shards import (
    SPLITS,
    ShardsConfig,
    assign_split,
    build_dataset_shards,
    inputs_of_part,
    read_shard,
    token_dtype,
)
from helox.tokens.tokenizer import TokenizerConfig, build_tokenizer
from helox.tokens.vocab import SPECIAL_IDS, load_tokenizer


def test_token_dtype_is_the_smallest_that_fits():
    assert token_dtype(8000) == np.uint16
    assert token_dtype(65536) == np.uint16
    assert token_dtype(65537) == np.uint32


def test_split_is_deterministic_and_follows_ratios():
    config = ShardsConfig(train_split=0.8, val_split=0.1, test_split=0.1)
    texts = [f"doc {i}" for i in range(5000)]
    first = [assign_split(t, 7, config) for t in texts]
    assert first == [assign_split(t, 7, config) for t in texts]
    assert first != [assign_split(t, 8, config) for t in texts]
    share = {s: first.count(s) / len(first) for s in SPLITS}
    assert abs(share["train"] - 0.8) < 0.03 and abs(share["val"] - 0.1) < 0.02


def test_shards_hold_every_document_once_with_eos(doc_parts, tmp_path):
    build_tokenizer(doc_parts, tmp_path / "tok", TokenizerConfig(vocab_size=1000, eval_docs=5))
    model = tmp_path / "tok" / "spm.model"
    config = ShardsConfig(train_split=0.6, val_split=0.2, test_split=0.2)
    manifest = build_dataset_shards(doc_parts, model, tmp_path / "shards", config, seed=3)

    processor = load_tokenizer(model)
    texts = [r["text"] for p in doc_parts for r in iter_jsonl(p)]
    expected = sorted(processor.encode(t) + [SPECIAL_IDS["</s>"]] for t in texts)
    found = []
    for split in SPLITS:
        tables = [read_shard(tmp_path / "shards" / f) for f in manifest["splits"][split]["files"]]
        rows = [row for t in tables for row in t.column("tokens").to_pylist()]
        assert tables[0].schema.field("tokens").type == pa.list_(pa.uint16())
        assert manifest["splits"][split]["documents"] == len(rows)
        assert manifest["splits"][split]["tokens"] == sum(map(len, rows))
        found.extend(rows)
    assert sorted(found) == expected
    assert manifest["vocab_size"] == processor.vocab_size
    assert len(manifest["tokenizer_sha256"]) == 64
    again = build_dataset_shards(doc_parts, model, tmp_path / "again", config, seed=3)
    assert again["shards_sha256"] == manifest["shards_sha256"]


def test_each_dedup_part_goes_to_exactly_one_shards_job():
    parts = list(range(7))
    chosen = [inputs_of_part(parts, job, 3) for job in range(3)]
    assert chosen == [[0, 3, 6], [1, 4], [2, 5]]


def test_fewer_shard_parts_hold_the_same_documents(doc_parts, tmp_path):
    build_tokenizer(doc_parts, tmp_path / "tok", TokenizerConfig(vocab_size=600, eval_docs=5))
    model = tmp_path / "tok" / "spm.model"
    two = build_dataset_shards(doc_parts, model, tmp_path / "two", ShardsConfig(parts=2), seed=1)
    one = build_dataset_shards(doc_parts, model, tmp_path / "one", ShardsConfig(parts=1), seed=1)
    assert len(one["splits"]["train"]["files"]) == 1
    for split in SPLITS:
        for key in ("documents", "tokens", "bytes"):
            assert one["splits"][split][key] == two["splits"][split][key]
    assert one["source_sha256"] == two["source_sha256"]


def test_manifest_hashes_follow_the_tokenizer(doc_parts, tmp_path):
    config = ShardsConfig(parts=2)
    hashes = []
    for vocab in (500, 600):
        folder = tmp_path / f"tok{vocab}"
        build_tokenizer(doc_parts, folder, TokenizerConfig(vocab_size=vocab, eval_docs=5))
        manifest = build_dataset_shards(
            doc_parts, folder / "spm.model", tmp_path / f"shards{vocab}", config, seed=1
        )
        hashes.append(manifest)
    assert hashes[0]["tokenizer_sha256"] != hashes[1]["tokenizer_sha256"]
    assert hashes[0]["shards_sha256"] != hashes[1]["shards_sha256"]
    assert hashes[0]["source_sha256"] == hashes[1]["source_sha256"]
