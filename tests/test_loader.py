"""Memory-mapped shard reading, window packing, exact resume and the unigram baseline."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from helox.tokens.loader import PackedBatches, TokenStream, eval_batches, unigram_baseline

EOS = 2


def write_shards(
    root: Path,
    splits: dict[str, list[list[int]]],
    files_per_split: int = 2,
    vocab_size: int = 64,
    token_dtype: str = "uint16",
) -> Path:
    """Write each split's documents, in order, over Arrow IPC files, plus manifest.json (with
    the train files as those of one source, as the shards stage writes a lone source's)."""
    manifest = {
        "splits": {},
        "vocab_size": vocab_size,
        "token_dtype": token_dtype,
        "eos_id": EOS,
        "bos_id": 1,
        "pad_id": 3,
        "tokenizer_sha256": "t",
        "source_sha256": "s",
    }
    for split, documents in splits.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        per_file = math.ceil(len(documents) / files_per_split) if documents else 0
        files = []
        for index in range(files_per_split):
            chunk = documents[index * per_file : (index + 1) * per_file]
            name = f"{split}/part-{index}.arrow"
            offsets = np.concatenate(([0], np.cumsum([len(d) for d in chunk], dtype=np.int32)))
            values = np.concatenate([np.asarray(d) for d in chunk] or [np.zeros(0)])
            column = pa.ListArray.from_arrays(
                pa.array(offsets, type=pa.int32()), pa.array(values.astype(token_dtype))
            )
            table = pa.table({"tokens": column})
            with (
                pa.OSFile(str(root / name), "wb") as sink,
                pa.ipc.new_file(sink, table.schema) as w,
            ):
                w.write_table(table)
            files.append(name)
        tokens = sum(len(d) for d in documents)
        manifest["splits"][split] = {
            "files": files,
            "documents": len(documents),
            "tokens": tokens,
            "bytes": 2 * tokens,
        }
    if "train" in manifest["splits"]:
        train_files = manifest["splits"]["train"]["files"]
        manifest["sources"] = {"raw": {"train_files": train_files}}
    path = root / "manifest.json"
    path.write_text(json.dumps(manifest))
    return path


def counting_documents(total: int, doc_len: int) -> list[list[int]]:
    """Documents whose concatenation is 4, 5, 6, ...: every token tells its position."""
    stream = list(range(4, 4 + total))
    return [stream[i : i + doc_len] for i in range(0, total, doc_len)]


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    return write_shards(
        tmp_path,
        {"train": counting_documents(1000, 37), "val": counting_documents(300, 50)},
        files_per_split=3,
        vocab_size=1100,
    )


def window_ids(inputs: torch.Tensor, seq_len: int) -> list[int]:
    """Which window each row is, read off its first token."""
    return [(int(row[0]) - 4) // seq_len for row in inputs]


def test_stream_is_zero_copy_view_of_the_memory_map(tmp_path: Path) -> None:
    documents = [list(range(4, 64)) * 500 + [EOS] for _ in range(4)]
    path = write_shards(tmp_path, {"train": documents}, files_per_split=2)
    before = pa.total_allocated_bytes()
    stream = TokenStream(path, "train")
    assert pa.total_allocated_bytes() - before < 1024
    assert stream.num_tokens == sum(len(d) for d in documents)
    maps = Path("/proc/self/maps").read_text().splitlines()
    for piece in stream.pieces:
        assert not piece.flags.owndata and not piece.flags.writeable
        address = piece.ctypes.data
        mapped = [line for line in maps if "part-" in line and str(tmp_path) in line]
        assert any(
            int(r.split()[0].split("-")[0], 16) <= address < int(r.split()[0].split("-")[1], 16)
            for r in mapped
        ), "token view does not point into a memory-mapped shard"


def test_windows_cover_the_stream_across_file_boundaries(manifest: Path) -> None:
    stream = TokenStream(manifest, "train")
    assert len(stream.pieces) == 3
    expected = np.arange(4, 1004)
    seq_len = 16
    assert stream.num_windows(seq_len) == (1000 - 1) // seq_len
    windows = np.arange(stream.num_windows(seq_len))
    inputs, labels = stream.batch(windows, seq_len)
    assert inputs.dtype == torch.int64 and inputs.shape == (len(windows), seq_len)
    for window, (x, y) in enumerate(zip(inputs, labels, strict=True)):
        start = window * seq_len
        np.testing.assert_array_equal(x.numpy(), expected[start : start + seq_len])
        np.testing.assert_array_equal(y.numpy(), expected[start + 1 : start + seq_len + 1])


def test_each_epoch_is_a_seeded_permutation_of_all_windows(manifest: Path) -> None:
    stream = TokenStream(manifest, "train")
    seq_len, num_windows = 16, (1000 - 1) // 16

    def epochs(seed: int, count: int) -> list[list[int]]:
        loader = PackedBatches(stream, seq_len, batch_size=1, seed=seed)
        seen = [window_ids(next(loader)[0], seq_len)[0] for _ in range(count * num_windows)]
        assert loader.state() == {"epoch": count - 1, "index": num_windows}
        return [seen[i * num_windows : (i + 1) * num_windows] for i in range(count)]

    first, second = epochs(7, 2)
    assert sorted(first) == sorted(second) == list(range(num_windows))
    assert first != second and first != list(range(num_windows))
    assert epochs(7, 1)[0] == first
    assert epochs(8, 1)[0] != first


def test_batches_continue_into_the_next_epoch(manifest: Path) -> None:
    stream = TokenStream(manifest, "train")
    loader = PackedBatches(stream, seq_len=16, batch_size=5, seed=1)
    num_windows = stream.num_windows(16)
    for _ in range(num_windows // 5):
        next(loader)
    straddling = next(loader)[0]
    assert straddling.shape == (5, 16)
    assert loader.state() == {"epoch": 1, "index": 5 - num_windows % 5}


def test_state_restores_the_exact_position_across_epochs(manifest: Path) -> None:
    stream = TokenStream(manifest, "train")
    loader = PackedBatches(stream, seq_len=16, batch_size=5, seed=3)
    for _ in range(17):
        next(loader)
    state = loader.state()
    assert state["epoch"] >= 1
    expected = [next(loader) for _ in range(20)]

    restored = PackedBatches(stream, seq_len=16, batch_size=5, seed=3)
    restored.load_state(json.loads(json.dumps(state)))
    for want, got in zip(expected, (next(restored) for _ in range(20)), strict=True):
        assert torch.equal(want[0], got[0]) and torch.equal(want[1], got[1])


def test_ranks_take_disjoint_slices_of_the_global_batch(manifest: Path) -> None:
    stream = TokenStream(manifest, "train")
    single = PackedBatches(stream, 16, batch_size=4, seed=1)
    ranks = [PackedBatches(stream, 16, batch_size=2, seed=1, rank=r, world_size=2) for r in (0, 1)]
    for _ in range(5):
        whole = next(single)[0]
        assert torch.equal(torch.cat([next(r)[0] for r in ranks]), whole)


def test_eval_batches_are_finite_ordered_and_repeatable(manifest: Path) -> None:
    stream = TokenStream(manifest, "val")
    first = list(eval_batches(stream, seq_len=16, batch_size=4))
    second = list(eval_batches(stream, seq_len=16, batch_size=4))
    assert [len(x) for x, _ in first] == [4, 4, 4, 4, 2]
    assert [w for x, _ in first for w in window_ids(x, 16)] == list(range(18))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, second, strict=True))


def test_uint32_shards_are_read(tmp_path: Path) -> None:
    documents = [[70000, 70001, 5, EOS], [9, 70002, EOS]]
    path = write_shards(tmp_path, {"train": documents}, 1, 80000, "uint32")
    stream = TokenStream(path, "train")
    assert stream.pieces[0].dtype == np.uint32
    inputs, labels = stream.batch(np.array([0]), seq_len=6)
    assert inputs.tolist() == [[70000, 70001, 5, EOS, 9, 70002]]
    assert labels.tolist() == [[70001, 5, EOS, 9, 70002, EOS]]


def test_short_empty_and_missing_splits_are_named(tmp_path: Path) -> None:
    path = write_shards(tmp_path, {"train": [[5, 6, EOS]], "val": []}, files_per_split=1)
    with pytest.raises(ValueError, match=r"split 'train' of .*manifest.json has 3 tokens"):
        PackedBatches(TokenStream(path, "train"), seq_len=8, batch_size=1, seed=0)
    with pytest.raises(ValueError, match=r"split 'val' .* has 0 tokens"):
        list(eval_batches(TokenStream(path, "val"), seq_len=8, batch_size=1))
    with pytest.raises(ValueError, match="no split 'test'"):
        TokenStream(path, "test")


def test_unigram_baseline_matches_hand_computation(tmp_path: Path) -> None:
    vocab = 8
    train = [[4, 4, 5, EOS], [4, 6, EOS]]
    val = [[4, 7, EOS]]
    path = write_shards(tmp_path, {"train": train, "val": val}, 1, vocab)
    counts = {4: 3, 5: 1, 6: 1, EOS: 2}
    total = 7
    prob = {t: (counts.get(t, 0) + 1) / (total + vocab) for t in range(vocab)}
    expected = -(math.log(prob[4]) + math.log(prob[7]) + math.log(prob[EOS])) / 3
    assert unigram_baseline(path) == pytest.approx(expected, rel=1e-12)


def test_unigram_baseline_rejects_ids_beyond_the_vocabulary(tmp_path: Path) -> None:
    path = write_shards(tmp_path, {"train": [[4, 9, EOS]], "val": [[4, EOS]]}, 1, vocab_size=8)
    with pytest.raises(ValueError, match="token id 9 >= vocab_size 8"):
        unigram_baseline(path)
