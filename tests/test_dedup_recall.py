"""Near-dedup after cleaning still finds planted near-copies of real prose and real code.

Each copy differs from its original by scattered word edits (raw Jaccard over the dedup's
own word 5-gram shingles between 0.8 and 0.92); prose copies are also re-wrapped to another
line width, as another edition would be. Originals, copies and unique documents go through
the clean stage and the dedup steps, at two numbers of parts and of bucket jobs: at least 95%
of the pairs must end as one document, no unique document kept by cleaning may be removed,
and both runs must keep the same documents.
"""

from __future__ import annotations

import pydoc_data.topics
import random
import textwrap
from pathlib import Path

from test_dedup import dedup
from test_kinds import real_prose

from helox.common.io import iter_jsonl
from helox.data.clean import clean_part
from helox.data.clean_config import CleanConfig
from helox.data.dedup import DedupConfig
from helox.data.minhash import shingle_texts
from helox.data.stdlib import stdlib_files, stdlib_root

# (parts, bucket jobs): the kept documents must not depend on either.
SPLITS = ((2, 1), (3, 4))


def shingles(text: str) -> set[str]:
    return set(shingle_texts(text, DedupConfig().near.ngram, DedupConfig().lowercase))


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b)


def distinct(texts: list[tuple[str, str]], limit: int = 0.5) -> list[tuple[str, str]]:
    """The texts, less any within Jaccard `limit` of an earlier one (a licence's other name)."""
    chosen: list[tuple[str, str, set[str]]] = []
    for name, text in texts:
        own = shingles(text)
        if own and all(jaccard(own, other) < limit for _, _, other in chosen):
            chosen.append((name, text, own))
    return [(name, text) for name, text, _ in chosen]


def edited(text: str, rng: random.Random, rate: float) -> str:
    """`text` with about `rate` of its words replaced, deleted or doubled, lines kept."""
    lines = []
    for line in text.split("\n"):
        words = line.split(" ")
        for index in range(len(words)):
            if words[index] and rng.random() < rate:
                action = rng.randrange(3)
                if action == 0:
                    words[index] = rng.choice(("value", "item", "thing", "object"))
                elif action == 1:
                    words[index] = ""
                else:
                    words[index] = f"{words[index]} {words[index]}"
        lines.append(" ".join(word for word in words if word))
    return "\n".join(lines)


def rewrapped(text: str, width: int) -> str:
    """Every paragraph of `text` filled to `width` columns."""
    return "\n\n".join(textwrap.fill(p, width) for p in text.split("\n\n") if p.strip())


def near_copy(text: str, rng: random.Random, wrap_to: int | None) -> tuple[str, float]:
    """A copy of `text` at raw Jaccard in [0.8, 0.92], and that Jaccard."""
    original = shingles(text)
    rate = 0.02
    for _ in range(40):
        copy = edited(text, rng, rate)
        if wrap_to:
            copy = rewrapped(copy, wrap_to)
        similarity = jaccard(original, shingles(copy))
        if 0.8 <= similarity <= 0.92:
            return copy, similarity
        rate *= 0.8 if similarity < 0.8 else 1.2
    raise AssertionError("no copy within the Jaccard range")


def real_code(count: int) -> list[tuple[str, str]]:
    found = []
    for source in stdlib_files(stdlib_root()):
        if 2_000 <= source.size <= 40_000 and source.relative.endswith(".py"):
            found.append((source.relative.replace("/", "_"), source.path.read_text("utf-8")))
        if len(found) == count:
            break
    return found


def test_planted_near_copies_collapse_after_cleaning_and_unique_documents_stay(
    tmp_path: Path,
) -> None:
    rng = random.Random(15)
    raw = tmp_path / "raw"
    raw.mkdir()
    prose = distinct([(n, t) for n, t in real_prose() if len(t) >= 1500])
    code = distinct(real_code(90))
    assert len(pydoc_data.topics.topics) > 40 and len(prose) >= 50 and len(code) >= 80
    pairs: dict[str, list[tuple[str, str]]] = {"prose": [], "code": []}
    unique: list[str] = []
    similarities = []
    for kind, texts, suffix in (("prose", prose, ".txt"), ("code", code, ".py")):
        for index, (name, text) in enumerate(texts):
            original = f"{name}{suffix}"
            (raw / original).write_text(text, encoding="utf-8")
            if index % 5 == 4:
                unique.append(original)
                continue
            copy, similarity = near_copy(
                text, rng, rng.choice((60, 72)) if kind == "prose" else None
            )
            (raw / f"{name}.copy{suffix}").write_text(copy, encoding="utf-8")
            pairs[kind].append((original, f"{name}.copy{suffix}"))
            similarities.append(similarity)
    assert min(similarities) >= 0.8 and len(pairs["prose"]) >= 40 and len(pairs["code"]) >= 60

    kept_sets = []
    for parts, bucket_jobs in SPLITS:
        folder = tmp_path / f"{parts}-{bucket_jobs}"
        cleaned = [folder / "clean" / f"part-{part}.jsonl.zst" for part in range(parts)]
        for part, output in enumerate(cleaned):
            clean_part(
                raw,
                part,
                parts,
                CleanConfig(parts=parts),
                output,
                folder / "clean" / f"rejected-{part}.jsonl.zst",
                folder / "clean" / f"part-{part}.stats.json",
            )
        after_clean = {record["source"] for path in cleaned for record in iter_jsonl(path)}
        config = DedupConfig(bucket_jobs=bucket_jobs)
        survivors, stats = dedup(cleaned, folder / "dedup", config)
        kept = {record["source"] for part in survivors for record in part}
        kept_sets.append(kept)

        for kind, planted in pairs.items():
            collapsed = sum(
                (original in kept) + (copy in kept) == 1
                for original, copy in planted
                if original in after_clean or copy in after_clean
            )
            assert collapsed >= 0.95 * len(planted), f"{kind}: {collapsed} of {len(planted)} pairs"
        lost = [name for name in unique if name in after_clean and name not in kept]
        assert lost == []
        planted_copies = sum(map(len, pairs.values()))
        assert stats["removed"]["near_duplicate"]["documents"] >= 0.95 * planted_copies
    assert kept_sets[0] == kept_sets[1]
