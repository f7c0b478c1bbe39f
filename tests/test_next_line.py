"""The built-in next-line task, made from the held-out test split of real shards."""

from __future__ import annotations

import logging

import pytest

from helox.common.io import read_json
from helox.eval.choice import read_choice_task
from helox.eval.config import NextLineTaskConfig
from helox.eval.next_line import build_next_line_task, is_informative
from helox.tokens.shards import ShardsConfig, build_dataset_shards, read_shard
from helox.tokens.tokenizer import TokenizerConfig, build_tokenizer
from helox.tokens.vocab import load_tokenizer


@pytest.fixture(scope="module")
def shards(doc_parts, tmp_path_factory):
    """Tokenizer and shards of the 80 fixture documents, a third of them held out for test."""
    root = tmp_path_factory.mktemp("next_line")
    build_tokenizer(doc_parts, root / "tok", TokenizerConfig(vocab_size=600, eval_docs=5))
    tokenizer = root / "tok" / "spm.model"
    config = ShardsConfig(parts=2, train_split=0.5, val_split=0.17, test_split=0.33)
    build_dataset_shards(doc_parts, tokenizer, root / "shards", config, seed=5)
    return root / "shards" / "manifest.json", tokenizer


def split_documents(manifest_path, tokenizer, split: str) -> list[list[str]]:
    """Each document of a split as its non-blank lines, right-stripped."""
    processor = load_tokenizer(tokenizer)
    documents = []
    for name in read_json(manifest_path)["splits"][split]["files"]:
        for ids in read_shard(manifest_path.parent / name).column("tokens").to_pylist():
            text = processor.decode(ids[:-1])
            documents.append([line.rstrip() for line in text.splitlines() if line.strip()])
    return documents


def source_document(documents: list[list[str]], block: list[str]) -> int | None:
    """The index of the document holding `block` as consecutive lines."""
    for index, lines in enumerate(documents):
        for start in range(len(lines) - len(block) + 1):
            if lines[start : start + len(block)] == block:
                return index
    return None


def test_trivial_lines_are_never_asked_about():
    for line in (")", "    else:", '    """', "# ------------", "    pass", "}),", ""):
        assert not is_informative(line), line
    for line in ("    return total + 1", "import os.path", "    def run(self):"):
        assert is_informative(line), line


def test_next_line_task_comes_from_test_documents_only(shards, tmp_path):
    manifest_path, tokenizer = shards
    config = NextLineTaskConfig(examples=60, choices=4, context_lines=3)
    output = tmp_path / "next_line.jsonl"
    stats = build_next_line_task(manifest_path, tokenizer, output, config, seed=11)

    test_docs = split_documents(manifest_path, tokenizer, "test")
    train_docs = split_documents(manifest_path, tokenizer, "train")
    assert len(test_docs) >= 10 and len(train_docs) >= 20
    assert stats == {
        "examples": 60,
        "requested": 60,
        "documents": len(test_docs),
        "documents_used": stats["documents_used"],
        "choices": 4,
        "context_lines": 3,
    }
    assert stats["documents_used"] >= 10, "examples should spread over the documents"
    examples = read_choice_task(output)
    assert len(examples) == 60
    for example in examples:
        context = example.context.removesuffix("\n").split("\n")
        gold = example.choices[example.gold]
        assert len(context) == 3 and example.context.endswith("\n")
        home = source_document(test_docs, [*context, gold])
        assert home is not None, "context and gold are not consecutive lines of a test document"
        assert is_informative(gold) and len(set(example.choices)) == 4
        for index, distractor in enumerate(example.choices):
            if index == example.gold:
                continue
            assert distractor.strip() != gold.strip() and is_informative(distractor)
            holders = [d for d, lines in enumerate(test_docs) if distractor in lines]
            assert any(holder != home for holder in holders), "distractor not from another document"
    assert len({example.gold for example in examples}) == 4, "the answer's position is shuffled"
    # Distractors follow the gold's length: the average gap is far below that of random lines.
    gaps = [
        abs(len(choice.strip()) - len(example.choices[example.gold].strip()))
        for example in examples
        for choice in example.choices
    ]
    assert sum(gaps) / len(gaps) < 5


def test_rebuilding_writes_the_same_bytes_and_a_new_seed_other_ones(shards, tmp_path):
    manifest_path, tokenizer = shards
    config = NextLineTaskConfig(examples=40, choices=3, context_lines=2)
    paths = [tmp_path / f"{name}.jsonl" for name in ("first", "again", "other")]
    for path, seed in zip(paths, (1, 1, 2), strict=True):
        build_next_line_task(manifest_path, tokenizer, path, config, seed=seed)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].read_bytes() != paths[2].read_bytes()


def test_a_small_test_split_gives_fewer_examples_or_a_clear_error(shards, tmp_path, caplog):
    manifest_path, tokenizer = shards
    output = tmp_path / "task.jsonl"
    with caplog.at_level(logging.WARNING, logger="helox.eval.next_line"):
        stats = build_next_line_task(
            manifest_path, tokenizer, output, NextLineTaskConfig(examples=10**6), seed=0
        )
    assert 1000 < stats["examples"] < 10**6
    assert len(read_choice_task(output)) == stats["examples"]
    assert f"{stats['examples']} examples instead of eval.next_line.examples 1000000" in caplog.text
    too_long = NextLineTaskConfig(context_lines=100_000)
    with pytest.raises(ValueError, match=r"test split has \d+ documents and 0 informative lines"):
        build_next_line_task(manifest_path, tokenizer, tmp_path / "none.jsonl", too_long, seed=0)
    assert not (tmp_path / "none.jsonl").exists()


def test_shards_of_another_tokenizer_are_refused(shards, doc_parts, tmp_path):
    manifest_path, _ = shards
    build_tokenizer(doc_parts, tmp_path, TokenizerConfig(vocab_size=500, eval_docs=5))
    with pytest.raises(ValueError, match="tokenized with another tokenizer"):
        build_next_line_task(
            manifest_path, tmp_path / "spm.model", tmp_path / "t.jsonl", NextLineTaskConfig(), 0
        )
