"""The built-in multiple-choice task: pick the true next line of a held-out document.

Made from the test split of the shards alone: no context or answer is taken from a training
document (a common line such as `import os` may of course occur in one too). Each example
shows `context_lines` consecutive non-blank lines of one test document; the choices are the
line that follows them and `choices - 1` lines of other test documents, with the same
indentation and about the same length where there are enough, so that neither indentation
nor length gives the answer away. Lines too short or without enough letters and digits
(`)`, `else:`, `# ----`) are never asked about.

When the split holds fewer usable lines than `examples`, the task is built from all of them
with a warning; when it cannot hold a single example, the build fails saying what it found.
Everything is drawn from one seeded generator, so a rebuild writes the same bytes. The test
split's text is held in memory while the task is built: it is a few percent of the corpus.
"""

from __future__ import annotations

import bisect
import logging
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from helox.common.io import JsonlWriter
from helox.eval.config import NextLineTaskConfig
from helox.tokens.shards import manifest_of_tokenizer, read_shard
from helox.tokens.vocab import TokenizerSource, load_tokenizer

log = logging.getLogger(__name__)

MIN_LINE_CHARS = 8  # characters of a line without its indentation
MIN_LINE_ALNUM = 4  # letters and digits in it
CANDIDATES_PER_DISTRACTOR = 3  # nearest-length lines a distractor is drawn from


def is_informative(line: str) -> bool:
    """Long enough and wordy enough to be worth predicting (not `)`, `else:`, `# ---`)."""
    text = line.strip()
    return len(text) >= MIN_LINE_CHARS and sum(c.isalnum() for c in text) >= MIN_LINE_ALNUM


def indent_of(line: str) -> int:
    return len(line) - len(line.lstrip())


def held_out_documents(
    manifest_path: str | os.PathLike, tokenizer: TokenizerSource
) -> Iterator[str]:
    """The text of every test-split document, in manifest order (BOS and EOS, special tokens,
    left out by decoding)."""
    manifest_path = Path(manifest_path)
    tokenizer = load_tokenizer(tokenizer)
    manifest = manifest_of_tokenizer(
        manifest_path, tokenizer, "its documents would decode to the wrong text"
    )
    for name in manifest["splits"]["test"]["files"]:
        for ids in read_shard(manifest_path.parent / name).column("tokens").to_pylist():
            yield tokenizer.decode(ids)


@dataclass(frozen=True)
class Line:
    text: str
    document: int

    @property
    def length(self) -> int:
        return len(self.text.strip())


class LengthSorted:
    """Lines sorted by length, searched outward from a given length."""

    def __init__(self, lines: list[Line]):
        self.lines = lines
        self.lengths = [line.length for line in lines]

    def nearest(self, gold: Line, wanted: int) -> list[Line]:
        """Up to `wanted` lines of other documents than `gold`'s, of distinct texts unlike
        its text, closest to its length first."""
        right = bisect.bisect_left(self.lengths, gold.length)
        left = right - 1
        found: list[Line] = []
        seen = {gold.text.strip()}
        while len(found) < wanted and (left >= 0 or right < len(self.lines)):
            go_right = left < 0 or (
                right < len(self.lines)
                and self.lengths[right] - gold.length <= gold.length - self.lengths[left]
            )
            if go_right:
                line, right = self.lines[right], right + 1
            else:
                line, left = self.lines[left], left - 1
            if line.document != gold.document and line.text.strip() not in seen:
                seen.add(line.text.strip())
                found.append(line)
        return found


class DistractorPool:
    """Informative lines of every document, by indentation and all together."""

    def __init__(self, documents: list[list[str]]):
        lines = sorted(
            (
                Line(text, index)
                for index, document in enumerate(documents)
                for text in document
                if is_informative(text)
            ),
            key=lambda line: (line.length, line.text, line.document),
        )
        self.everything = LengthSorted(lines)
        by_indent: dict[int, list[Line]] = {}
        for line in lines:
            by_indent.setdefault(indent_of(line.text), []).append(line)
        self.by_indent = {indent: LengthSorted(group) for indent, group in by_indent.items()}

    def draw(self, gold: Line, count: int, rng: random.Random) -> list[str] | None:
        """`count` distinct lines of other documents unlike `gold`, of its indentation if
        enough exist, drawn among those nearest its length; None when too few exist."""
        for pool in (self.by_indent[indent_of(gold.text)], self.everything):
            found = pool.nearest(gold, count * CANDIDATES_PER_DISTRACTOR)
            if len(found) >= count:
                return [line.text for line in rng.sample(found, count)]
        return None


def question_positions(
    documents: list[list[str]], context_lines: int, examples: int, rng: random.Random
) -> list[tuple[int, int]]:
    """(document, line) pairs of informative lines with `context_lines` lines before them,
    taken one document at a time in turn so that no long document dominates the task."""
    remaining: dict[int, list[int]] = {}
    for index, lines in enumerate(documents):
        positions = [i for i in range(context_lines, len(lines)) if is_informative(lines[i])]
        if positions:
            rng.shuffle(positions)
            remaining[index] = positions
    order = sorted(remaining)
    rng.shuffle(order)
    picked: list[tuple[int, int]] = []
    while len(picked) < examples and any(remaining[d] for d in order):
        for document in order:
            if remaining[document] and len(picked) < examples:
                picked.append((document, remaining[document].pop()))
    return picked


def build_next_line_task(
    manifest_path: str | os.PathLike,
    tokenizer: TokenizerSource,
    output_path: str | os.PathLike,
    config: NextLineTaskConfig,
    seed: int,
) -> dict:
    """Write the next-line task as JSONL of {"context", "choices", "gold"}, atomically;
    return how many examples, documents and lines it was built from."""
    documents = [
        [line.rstrip() for line in text.splitlines() if line.strip()]
        for text in held_out_documents(manifest_path, tokenizer)
    ]
    rng = random.Random(seed)
    positions = question_positions(documents, config.context_lines, config.examples, rng)
    pool = DistractorPool(documents)
    records, documents_used = [], set()
    for document, line in positions:
        lines = documents[document]
        gold = Line(lines[line], document)
        distractors = pool.draw(gold, config.choices - 1, rng)
        if distractors is None:
            continue
        answer = rng.randrange(config.choices)
        documents_used.add(document)
        records.append(
            {
                "context": "\n".join(lines[line - config.context_lines : line]) + "\n",
                "choices": distractors[:answer] + [gold.text] + distractors[answer:],
                "gold": answer,
            }
        )
    if not records:
        raise ValueError(
            f"{manifest_path}: the test split has {len(documents)} documents and "
            f"{len(positions)} informative lines with {config.context_lines} non-blank lines "
            f"before them; the next-line task needs at least one such line and "
            f"{config.choices - 1} distinct informative lines in other documents "
            "(lower eval.next_line.context_lines or choices, or raise shards.test_split)"
        )
    if len(records) < config.examples:
        log.warning(
            "next-line task: %d examples instead of eval.next_line.examples %d; the test split "
            "of %s has no more usable lines",
            len(records),
            config.examples,
            manifest_path,
        )
    with JsonlWriter(output_path) as writer:
        for record in records:
            writer.write(record)
    return {
        "examples": len(records),
        "requested": config.examples,
        "documents": len(documents),
        "documents_used": len(documents_used),
        "choices": config.choices,
        "context_lines": config.context_lines,
    }
