"""MinHash: vectorised shingles match their plain definition, signatures estimate Jaccard, and
the dedup stage finds near-duplicates planted in real text without removing distinct documents."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import numpy as np
import pytest
import yaml

from helox.common.config_files import section_from_dict
from helox.common.io import JsonlWriter
from helox.data.dedup import DedupConfig
from helox.data.dedup_index import IndexSettings, sign_part
from helox.data.dedup_join import join_pairs
from helox.data.dedup_pairs import find_pairs
from helox.data.minhash import MinHasher, UnionFind, bucket_pairs, shingle_texts
from helox.data.stdlib import stdlib_files, stdlib_root
from helox.pipeline.config import resolve_config

REPO = Path(__file__).resolve().parents[1]


def real_texts(count: int, min_bytes: int = 2_000, max_bytes: int = 20_000) -> list[str]:
    """Standard-library sources in the library's diverse, deterministic order."""
    texts = []
    for source in stdlib_files(stdlib_root()):
        if min_bytes <= source.size <= max_bytes and source.relative.endswith(".py"):
            texts.append(source.path.read_text(encoding="utf-8"))
        if len(texts) == count:
            break
    return texts


def edit_words(text: str, vocabulary: list[str], rng: random.Random) -> str:
    """A copy with 5–10% of its words replaced, deleted or inserted, scattered or in runs."""
    words = text.split()
    edits = max(1, round(len(words) * rng.uniform(0.05, 0.10)))
    style = rng.choice(["scattered", "one run", "runs"])
    if style == "scattered":
        positions = set(rng.sample(range(len(words)), edits))
    elif style == "one run":
        start = rng.randrange(len(words) - edits)
        positions = set(range(start, start + edits))
    else:
        positions = set()
        while len(positions) < edits:
            start = rng.randrange(len(words))
            positions.update(range(start, min(len(words), start + rng.randint(3, 12))))
        positions = set(sorted(positions)[:edits])
    for position in sorted(positions, reverse=True):
        roll = rng.random()
        if roll < 0.6:
            words[position] = rng.choice(vocabulary)
        elif roll < 0.8:
            del words[position]
        else:
            words.insert(position, rng.choice(vocabulary))
    return " ".join(words)


def planted_corpus(seed: int = 7) -> list[str]:
    """Real modules, and for every other one 1–2 copies with 5–10% of their words edited."""
    rng = random.Random(seed)
    originals = real_texts(130)
    vocabulary = [word for text in originals[:10] for word in text.split()]
    docs = []
    for number, text in enumerate(originals):
        docs.append(text)
        if number % 2 == 0:
            docs += [edit_words(text, vocabulary, rng) for _ in range(rng.randint(1, 2))]
    rng.shuffle(docs)
    return docs


def true_jaccard(docs: list[str], ngram: int) -> dict[tuple[int, int], float]:
    """Exact Jaccard of the shingle sets of every pair that could reach 0.5 (sizes within 2×)."""
    shingles = [frozenset(shingle_texts(text, ngram, lowercase=True)) for text in docs]
    similarity = {}
    for i, j in itertools.combinations(range(len(docs)), 2):
        small, large = sorted((len(shingles[i]), len(shingles[j])))
        if small >= large / 2:
            common = len(shingles[i] & shingles[j])
            similarity[i, j] = common / (len(shingles[i]) + len(shingles[j]) - common)
    return similarity


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> tuple[list[str], dict[tuple[int, int], float]]:
    docs = planted_corpus()
    return docs, true_jaccard(docs, DedupConfig().near.ngram)


def test_shipped_config_is_the_default() -> None:
    config = resolve_config(yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8")))
    assert section_from_dict(DedupConfig, config["dedup"], "dedup") == DedupConfig()


def test_vectorised_shingles_match_their_definition() -> None:
    texts = [
        *real_texts(6),
        "Ünïcode wörds — and CamelCase_names, 3.14 too: ÄÖÜ äöü straße STRASSE",
        "four short words here",
        "... !!! ---",
        "",
    ]
    hasher = MinHasher(ngram=5)
    hashes, counts = hasher.shingle_hashes(texts)
    starts = np.cumsum(counts) - counts
    for text, start, count in zip(texts, starts, counts, strict=True):
        reference = shingle_texts(text, 5, lowercase=True)
        assert count == len(reference)
        assert len(np.unique(hashes[start : start + count])) == len(set(reference))
    # A shingle hashes the same wherever it occurs: a text's prefix shares all its shingles.
    head, _ = hasher.shingle_hashes([texts[0][: len(texts[0]) // 2]])
    assert np.isin(head[:-1], hashes[: counts[0]]).all()
    cased, _ = MinHasher(lowercase=False).shingle_hashes(["Same Words In Caps"])
    folded, _ = MinHasher(lowercase=True).shingle_hashes(["Same Words In Caps"])
    assert cased[0] != folded[0]


def test_signatures_do_not_depend_on_batching_and_follow_the_seed() -> None:
    texts = real_texts(5)
    hasher = MinHasher(num_perm=64)
    together, counts = hasher.signatures(texts)
    alone = np.concatenate([hasher.signatures([text])[0] for text in texts])
    assert together.shape == (5, 64) and together.dtype == np.uint32
    np.testing.assert_array_equal(together, alone)
    assert (counts > 0).all()
    assert (MinHasher(num_perm=64, seed=2).signatures(texts)[0] != together).mean() > 0.9
    assert MinHasher(num_perm=0).signatures(texts)[0].shape == (5, 0)


def test_signatures_estimate_jaccard(planted) -> None:
    docs, similarity = planted
    pairs = [(pair, value) for pair, value in similarity.items() if value >= 0.3]
    signatures, _ = MinHasher().signatures(docs)
    errors = np.array([(signatures[i] == signatures[j]).mean() - value for (i, j), value in pairs])
    assert len(pairs) > 100
    assert abs(errors.mean()) < 0.04
    assert np.abs(errors).mean() < 0.05
    assert np.abs(errors).max() < 0.2


def test_planted_near_duplicates_are_found_and_distinct_documents_kept(
    planted, tmp_path: Path
) -> None:
    docs, similarity = planted
    config = DedupConfig()
    corpus = tmp_path / "part-0.jsonl.zst"
    with JsonlWriter(corpus) as writer:
        for number, text in enumerate(docs):
            writer.write({"text": text, "source": f"doc{number}"})
    index, pairs, removed = tmp_path / "index", tmp_path / "pairs.npz", tmp_path / "removed.npz"
    sign_part(corpus, index, IndexSettings.of(config))
    find_pairs([index], 0, 1, pairs, config)
    join_pairs([index], [pairs], [removed], tmp_path / "stats.json")
    with np.load(removed) as removed:
        keeper = dict(zip(removed["index"].tolist(), removed["keep_index"].tolist(), strict=True))

    similar = [pair for pair, value in similarity.items() if value >= 0.8]
    distinct = [pair for pair, value in similarity.items() if 0.2 < value < 0.5]
    assert len(similar) >= 30 and len(distinct) >= 30, "the corpus must test both bounds"
    recall = np.mean([keeper.get(i, i) == keeper.get(j, j) for i, j in similar])
    assert recall >= 0.95

    kept = [number for number in range(len(docs)) if number not in keeper]
    for number in keeper:
        best = max(similarity.get((min(number, k), max(number, k)), 0.0) for k in kept)
        assert best >= 0.5, f"doc {number} removed, yet its best Jaccard to a kept doc is {best}"


def test_union_find_matches_a_plain_one() -> None:
    rng = np.random.default_rng(0)
    left, right = rng.integers(0, 500, 400), rng.integers(0, 500, 400)
    clusters = UnionFind.of_size(500)
    clusters.union(left[:200], right[:200])
    clusters.union(left[200:], right[200:])
    parent = list(range(500))

    def find(item: int) -> int:
        while parent[item] != item:
            item = parent[item]
        return item

    for a, b in zip(left.tolist(), right.tolist(), strict=True):
        parent[max(find(a), find(b))] = min(find(a), find(b))
    assert clusters.roots().tolist() == [find(item) for item in range(500)]


def test_bucket_pairs_link_each_member_to_the_first_and_the_previous() -> None:
    keys = np.array([7, 3, 7, 7, 3, 9], dtype=np.uint64)
    left, right = bucket_pairs(keys)
    assert set(zip(left.tolist(), right.tolist(), strict=True)) == {(2, 0), (3, 2), (3, 0), (4, 1)}
