"""The tokenizer stage: SentencePiece trained on the deduplicated corpus, then evaluated on
held-out documents; or, for a stage that starts from a model folder of another family, that
folder's own tokenizer standing in (`adopt_tokenizer`), evaluated the same way. The special
tokens Helox's reserves and `load_tokenizer` are helox.tokens.vocab.

The stage's artifact is a folder (`results/tokenizer/files/`) holding what a model folder
holds of its tokenizer: Helox's `tokenizer.model`, or the adopted folder's files as they are.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import sentencepiece as spm

from helox.common.io import atomic_path, iter_jsonl, write_json
from helox.tokens.folder_files import TOKENIZER_FILES
from helox.tokens.vocab import (
    BOS,
    CHAT_MARKERS,
    EOS,
    PAD,
    SPECIAL_IDS,
    UNK,
    TokenizerSource,
    load_tokenizer,
)

log = logging.getLogger(__name__)

HELD_OUT_MODULUS = 50


@dataclass
class TokenizerConfig:
    model_type: str = "bpe"  # bpe | unigram
    vocab_size: int = 8000
    character_coverage: float = 0.9995
    max_train_bytes: int = 300_000_000  # larger corpora train on a deterministic sample
    max_sentence_bytes: int = 4096
    eval_docs: int = 200


def is_held_out(text: str) -> bool:
    """One document in HELD_OUT_MODULUS, chosen by content, is kept out of training for eval."""
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % HELD_OUT_MODULUS == 0


def split_long_text(text: str, max_bytes: int) -> Iterator[str]:
    """Cut `text` at line ends into pieces of at most `max_bytes` UTF-8 bytes (longer lines cut)."""
    piece: list[str] = []
    size = 0
    for line in text.splitlines(keepends=True):
        line_bytes = len(line.encode("utf-8"))
        if piece and size + line_bytes > max_bytes:
            yield "".join(piece)
            piece, size = [], 0
        while line_bytes > max_bytes:
            head = line.encode("utf-8")[:max_bytes].decode("utf-8", "ignore")
            yield head
            line = line[len(head) :]
            line_bytes = len(line.encode("utf-8"))
        piece.append(line)
        size += line_bytes
    if piece:
        yield "".join(piece)


def training_sentences(
    records: Iterable[dict], max_train_bytes: int, total_bytes: int, max_sentence_bytes: int
) -> Iterator[str]:
    """Deterministically sample about `max_train_bytes` of non-held-out text, cut into sentences."""
    keep_fraction = min(1.0, max_train_bytes / max(total_bytes, 1))
    threshold = int(keep_fraction * 2**64)
    emitted = 0
    for record in records:
        text = record["text"]
        if is_held_out(text):
            continue
        digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8, salt=b"spm")
        if int.from_bytes(digest.digest(), "little") >= threshold:
            continue
        for sentence in split_long_text(text, max_sentence_bytes):
            emitted += len(sentence.encode("utf-8"))
            if emitted > max_train_bytes:
                return
            yield sentence


def train_tokenizer(
    input_paths: list[str | os.PathLike],
    model_path: str | os.PathLike,
    config: TokenizerConfig,
    threads: int = 2,
) -> Path:
    """Train a SentencePiece model on JSONL(.zst) documents with `threads` threads and write it
    to `model_path`."""
    total_bytes = sum(len(r["text"].encode("utf-8")) for p in input_paths for r in iter_jsonl(p))
    if total_bytes == 0:
        raise ValueError(f"no text to train the tokenizer on in {[str(p) for p in input_paths]}")
    records = (record for path in input_paths for record in iter_jsonl(path))
    sentences = training_sentences(
        records, config.max_train_bytes, total_bytes, config.max_sentence_bytes
    )
    model = io.BytesIO()
    log.info(
        "training a %s tokenizer, vocabulary %d, on up to %d of %d bytes",
        config.model_type,
        config.vocab_size,
        config.max_train_bytes,
        total_bytes,
    )
    try:
        _train_sentencepiece(sentences, model, config, threads)
    except RuntimeError as error:
        message = vocab_size_message(error, config)
        if message is None:
            raise
        raise ValueError(message) from error
    with atomic_path(model_path) as tmp:
        tmp.write_bytes(model.getvalue())
    return Path(model_path)


# SentencePiece's complaint when the vocabulary cannot hold every required character.
TOO_FEW_PIECES = re.compile(r"Vocabulary size is smaller than required_chars\. (\d+) vs (\d+)")


def vocab_size_message(error: RuntimeError, config: TokenizerConfig) -> str | None:
    """What to change when SentencePiece found tokenizer.vocab_size too small for the
    corpus's characters; None for any other training error."""
    found = TOO_FEW_PIECES.search(str(error))
    if found is None:
        return None
    needed = int(found.group(2))
    return (
        f"config key tokenizer.vocab_size: {config.vocab_size} is too small for this corpus: "
        "the byte and special tokens and the characters that make up "
        f"tokenizer.character_coverage ({config.character_coverage}) of its text take "
        f"{needed} pieces; set tokenizer.vocab_size well above {needed} (the rest are merges) "
        "or lower tokenizer.character_coverage"
    )


def _train_sentencepiece(
    sentences: Iterator[str], model: io.BytesIO, config: TokenizerConfig, threads: int
) -> None:
    spm.SentencePieceTrainer.train(
        sentence_iterator=sentences,
        model_writer=model,
        model_type=config.model_type,
        vocab_size=config.vocab_size,
        character_coverage=config.character_coverage,
        byte_fallback=True,
        split_digits=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=False,
        allow_whitespace_only_pieces=True,
        max_sentence_length=config.max_sentence_bytes,
        input_sentence_size=0,
        unk_id=SPECIAL_IDS[UNK],
        bos_id=SPECIAL_IDS[BOS],
        eos_id=SPECIAL_IDS[EOS],
        pad_id=SPECIAL_IDS[PAD],
        control_symbols=list(CHAT_MARKERS),
        num_threads=threads,
        hard_vocab_limit=False,
        minloglevel=2,
    )


@dataclass
class KindEval:
    """Running sums for one document kind."""

    documents: int = 0
    bytes: int = 0
    tokens: int = 0
    byte_fallback_tokens: int = 0  # byte pieces (<0x41>), spelling what the vocabulary lacks
    roundtrip_failures: int = 0  # documents that do not decode back to their text

    def summary(self) -> dict:
        return {
            "documents": self.documents,
            "bytes": self.bytes,
            "tokens": self.tokens,
            "bytes_per_token": self.bytes / max(self.tokens, 1),
            "byte_fallback_share": self.byte_fallback_tokens / max(self.tokens, 1),
            "roundtrip_failures": self.roundtrip_failures,
        }


def evaluate_tokenizer(
    input_paths: list[str | os.PathLike], tokenizer: TokenizerSource, max_docs: int
) -> dict:
    """Bytes per token, byte-fallback share and exact round trip on held-out documents."""
    tokenizer = load_tokenizer(tokenizer)
    byte_ids = tokenizer.byte_fallback_ids
    per_kind: dict[str, KindEval] = {}
    for record in (r for p in input_paths for r in iter_jsonl(p)):
        if sum(k.documents for k in per_kind.values()) >= max_docs:
            break
        text = record["text"]
        if not is_held_out(text):
            continue
        ids = tokenizer.encode(text)
        stats = per_kind.setdefault(record.get("kind", "prose"), KindEval())
        stats.documents += 1
        stats.bytes += len(text.encode("utf-8"))
        stats.tokens += len(ids)
        stats.byte_fallback_tokens += sum(1 for i in ids if i in byte_ids)
        stats.roundtrip_failures += tokenizer.decode(ids) != text
    total = KindEval()
    for stats in per_kind.values():
        for name in vars(total):
            setattr(total, name, getattr(total, name) + getattr(stats, name))
    return {
        "kind": tokenizer.kind,
        "vocab_size": tokenizer.vocab_size,
        "held_out": f"one document in {HELD_OUT_MODULUS}, chosen by a hash of its text",
        "overall": total.summary(),
        "per_kind": {kind: stats.summary() for kind, stats in sorted(per_kind.items())},
        "roundtrip_ok": total.roundtrip_failures == 0,
    }


def build_tokenizer(
    input_paths: list[str | os.PathLike],
    output_dir: str | os.PathLike,
    config: TokenizerConfig,
    prefix: str = "spm",
    threads: int = 2,
    model_path: str | os.PathLike | None = None,
) -> dict:
    """The tokenizer stage: `<prefix>.model` (or `model_path`), `<prefix>.vocab` (piece,
    score) and `eval.json` in `output_dir`."""
    output_dir = Path(output_dir)
    model_path = model_path or output_dir / f"{prefix}.model"
    model_path = train_tokenizer(input_paths, model_path, config, threads)
    processor = load_tokenizer(model_path).processor
    with atomic_path(output_dir / f"{prefix}.vocab") as tmp:
        tmp.write_text(
            "".join(
                f"{json.dumps(piece, ensure_ascii=False)}\t{processor.get_score(i)}\n"
                for i, piece in enumerate(map(processor.id_to_piece, range(len(processor))))
            ),
            encoding="utf-8",
        )
    report = evaluate_tokenizer(input_paths, model_path, config.eval_docs)
    write_json(output_dir / "eval.json", report)
    log.info("tokenizer eval: %s", report["overall"])
    return report


def adopt_tokenizer(
    source: str | os.PathLike,
    input_paths: list[str | os.PathLike],
    folder: str | os.PathLike,
    eval_path: str | os.PathLike,
    eval_docs: int,
) -> dict:
    """Stand the tokenizer of the model folder `source` in for the tokenizer stage: copy its
    files into `folder` as they are, and evaluate it on the corpus (`eval_path`) as that
    stage does."""
    tokenizer = load_tokenizer(source)
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        for name in TOKENIZER_FILES:
            if (Path(source) / name).is_file():
                shutil.copyfile(Path(source) / name, tmp / name)
    report = evaluate_tokenizer(input_paths, tokenizer, eval_docs)
    write_json(eval_path, report)
    log.info("%s tokenizer of %s: %s", tokenizer.kind, source, report["overall"])
    return report
