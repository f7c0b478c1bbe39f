from __future__ import annotations

from helox.common.io import read_json
from helox.tokens.tokenizer import (
    TokenizerConfig,
    build_tokenizer,
    is_held_out,
    split_long_text,
    training_sentences,
)
from helox.tokens.vocab import CHAT_MARKERS, SPECIAL_IDS, load_tokenizer


def test_split_long_text_keeps_every_byte_and_respects_the_limit():
    text = "short line\n" * 50 + "x" * 1000 + "\n" + "é" * 300 + "\ntail"
    pieces = list(split_long_text(text, 128))
    assert "".join(pieces) == text
    assert all(len(p.encode("utf-8")) <= 128 for p in pieces)


def test_tokenizer_special_ids_roundtrip_and_eval(doc_parts, tmp_path):
    config = TokenizerConfig(vocab_size=1200, eval_docs=50)
    report = build_tokenizer(doc_parts, tmp_path, config, threads=2)
    processor = load_tokenizer(tmp_path / "spm.model").processor
    for piece, index in SPECIAL_IDS.items():
        assert processor.id_to_piece(index) == piece
    # chat markers are control symbols: typed in text they are never the special token
    assert all(SPECIAL_IDS[m] not in processor.encode(f"say {m} now") for m in CHAT_MARKERS)
    code = "def f(x):\n\tif x:\n        return  x  # ünïcode ☃ 12345\n\n\n"
    assert processor.decode(processor.encode(code)) == code
    assert (tmp_path / "spm.vocab").read_text().count("\n") == processor.get_piece_size()
    saved = read_json(tmp_path / "eval.json")
    assert saved == report
    assert report["roundtrip_ok"] is True
    assert report["overall"]["documents"] >= 1
    assert report["overall"]["bytes_per_token"] > 1.5
    assert set(report["per_kind"]) == {"code"}


def test_held_out_choice_is_stable():
    texts = [f"document number {i}" for i in range(2000)]
    chosen = [t for t in texts if is_held_out(t)]
    assert chosen == [t for t in texts if is_held_out(t)]
    assert 10 < len(chosen) < 90


def test_training_sample_is_bounded_deterministic_and_skips_held_out():
    records = [{"text": f"line {i} of document {d}\n" * 40} for d in range(300) for i in range(1)]
    total = sum(len(r["text"].encode()) for r in records)
    first = list(training_sentences(records, total // 4, total, max_sentence_bytes=256))
    assert first == list(training_sentences(records, total // 4, total, max_sentence_bytes=256))
    assert 0 < sum(len(s.encode()) for s in first) <= total // 4
    assert all(len(s.encode()) <= 256 for s in first)
    assert not any(
        is_held_out(r["text"]) and r["text"].startswith(s) for r in records for s in first
    )
    everything = list(training_sentences(records, 10 * total, total, max_sentence_bytes=10_000))
    kept = [r["text"] for r in records if not is_held_out(r["text"])]
    assert everything == kept
