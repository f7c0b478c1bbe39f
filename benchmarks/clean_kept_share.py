"""Bytes kept by cleaning on real hand-written code, per package, and characters kept on real
long-form prose and documentation: web rules on everything (the clean stage before kinds)
against cleaning by kind (the default), per root.

The code is the Python of well-known libraries installed beside Helox (CODE_PACKAGES, from
this interpreter's site-packages), each file one code document, files whose first five lines
say they are generated left out. It is cleaned by the default config, and by the same config
with the URL rule that it replaced (more than 20 URLs, whatever the length of the file).

The prose is what this machine ships (benchmarks/clean_throughput.py's PROSE_ROOTS: Vim's
help, Git's release notes, CMake's reference, the common licences) plus Python's own
reference documentation (pydoc's topics) and licence. Each file is one document, read
whole. Then the near-dedup recall after cleaning: for each pydoc topic and licence of 1,500
characters or more, a near-copy (scattered word edits, raw Jaccard 0.80-0.92 over the
dedup's word 5-gram shingles, re-wrapped to another width), cleaned both ways as two parts
and deduplicated with the default settings; a pair collapses when exactly one of the two
is left.

    .venv/bin/python benchmarks/clean_kept_share.py [--code-only]
"""

from __future__ import annotations

import argparse
import pydoc_data.topics
import random
import re
import sys
import sysconfig
import tempfile
from collections import Counter
from dataclasses import replace
from pathlib import Path

from clean_throughput import PROSE_ROOTS, PROSE_SUFFIXES

from helox.data.clean import clean_part
from helox.data.clean_config import CleanConfig
from helox.data.corpus import SourceConfig
from helox.data.dedup import DedupConfig
from helox.data.documents import Document, Stats
from helox.data.filters import apply_steps, build_steps
from helox.data.filters.general import URL_PATTERN
from helox.data.kinds import detect_kind

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_dedup import dedup  # noqa: E402
from test_dedup_recall import distinct, near_copy  # noqa: E402
from test_kinds import PYTHON_LICENSE, WEB_RULES_EVERYWHERE  # noqa: E402

# The clean stage before kinds, its length limit included.
WEB_RULES_BEFORE_KINDS = replace(WEB_RULES_EVERYWHERE, max_text_length=1_000_000)
# Libraries whose hand-written Python is measured (import names, as folders of site-packages).
CODE_PACKAGES = (
    "numpy",
    "scipy",
    "pandas",
    "sympy",
    "sklearn",
    "matplotlib",
    "networkx",
    "sqlalchemy",
    "docutils",
    "transformers",
    "torch",
    "_pytest",
    "pip",
    "setuptools",
    "rich",
    "requests",
)
# What a generated file says of itself in its first lines.
GENERATED = re.compile(r"generated|do not edit", re.IGNORECASE)
# The URL rule before issue 27: at most this many URLs in a document, whatever its length.
OLD_MAX_URLS = 20


def hand_written(package: str) -> list[tuple[str, str]]:
    """The package's Python files as (name, text), less those whose first 5 lines say they
    are generated and those that are not UTF-8."""
    root = Path(sysconfig.get_paths()["purelib"]) / package
    files = []
    for path in sorted(root.rglob("*.py")):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        if not GENERATED.search("\n".join(text.split("\n", 5)[:5])):
            files.append((str(path.relative_to(root.parent)), text))
    return files


def code_table() -> None:
    """Per package: MB of hand-written code, the share of its bytes kept now and with the
    old URL count; then the bytes each rule removes, over all packages."""
    now_steps = build_steps(CleanConfig())
    without_urls = build_steps(CleanConfig(max_url_char_fraction=1.0))
    removed: Counter[str] = Counter()
    largest: dict[str, tuple[int, str]] = {}
    totals = Counter()
    print("| package | files | MB | kept | kept with the old URL count |")
    print("| --- | --- | --- | --- | --- |")
    for package in CODE_PACKAGES:
        files = hand_written(package)
        size = now = before = 0
        for name, text in files:
            nbytes = len(text.encode("utf-8"))
            size += nbytes
            _, dropped = apply_steps(Document(text, name, "code"), now_steps, Stats())
            if dropped is None:
                now += nbytes
            else:
                rule = f"{dropped.step}: {dropped.rule}"
                removed[rule] += nbytes
                largest[rule] = max(largest.get(rule, (0, "")), (nbytes, name))
            too_many_urls = sum(1 for _ in URL_PATTERN.finditer(text)) > OLD_MAX_URLS
            _, dropped = apply_steps(Document(text, name, "code"), without_urls, Stats())
            before += nbytes if dropped is None and not too_many_urls else 0
        totals.update(files=len(files), size=size, now=now, before=before)
        print(
            f"| {package} | {len(files)} | {size / 1e6:.1f} | {now / size:.1%} "
            f"| {before / size:.1%} |"
        )
    size = totals["size"]
    print(
        f"| **all** | {totals['files']} | {size / 1e6:.1f} | **{totals['now'] / size:.1%}** "
        f"| {totals['before'] / size:.1%} |"
    )
    print()
    print("| removed by | MB | share of all bytes | largest file |")
    print("| --- | --- | --- | --- |")
    for rule, nbytes in removed.most_common():
        biggest, name = largest[rule]
        share = f"{nbytes / size:.2%}"
        print(f"| {rule} | {nbytes / 1e6:.2f} | {share} | {name} ({biggest / 1e6:.2f} MB) |")
    print()


def roots() -> dict[str, list[tuple[str, str]]]:
    """The documents of each root, as (name, text)."""
    found: dict[str, list[tuple[str, str]]] = {}
    for root in PROSE_ROOTS:
        if root.is_dir():
            texts = []
            for path in sorted(root.rglob("*")):
                if path.is_file() and path.suffix in PROSE_SUFFIXES:
                    try:
                        texts.append((str(path), path.read_text(encoding="utf-8")))
                    except UnicodeDecodeError:
                        continue
            found[str(root)] = texts
    found["pydoc topics"] = sorted(pydoc_data.topics.topics.items())
    found["Python LICENSE.txt"] = [("LICENSE.txt", PYTHON_LICENSE.read_text(encoding="utf-8"))]
    return found


def kept(texts: list[tuple[str, str]], config: CleanConfig, by_kind: bool) -> tuple[int, int]:
    """Documents and characters kept."""
    steps = build_steps(config)
    stats = Stats()
    documents = characters = 0
    for name, text in texts:
        doc = Document(text, name, detect_kind(text) if by_kind else "web")
        result, dropped = apply_steps(doc, steps, stats)
        if dropped is None:
            documents += 1
            characters += len(result.text)
    return documents, characters


def recall(workdir: Path) -> dict[str, tuple[int, int, int, int]]:
    """Pairs collapsed to one, both kept, both removed, of all pairs, for each way to clean."""
    rng = random.Random(15)
    raw = workdir / "raw"
    raw.mkdir()
    texts = [(f"pydoc-{n}", t) for n, t in pydoc_data.topics.topics.items() if len(t) >= 1500]
    pairs = []
    for name, text in distinct(texts):
        (raw / f"{name}.txt").write_text(text, encoding="utf-8")
        copy, _ = near_copy(text, rng, rng.choice((60, 72)))
        (raw / f"{name}.copy.txt").write_text(copy, encoding="utf-8")
        pairs.append((f"{name}.txt", f"{name}.copy.txt"))
    results = {}
    for label, kind, config in (
        ("web rules on everything", "web", WEB_RULES_BEFORE_KINDS),
        ("by kind (default)", "", CleanConfig()),
    ):
        out = workdir / label.split()[0]
        cleaned = [out / f"part-{part}.jsonl.zst" for part in range(2)]
        for part, path in enumerate(cleaned):
            source = SourceConfig("raw", str(raw), kind=kind)
            clean_part([source], part, 2, config, path, out / f"r{part}", out / f"s{part}")
        survivors, _ = dedup(cleaned, out / "dedup", DedupConfig())
        left = {record["source"] for part in survivors for record in part}
        count = Counter((a in left) + (b in left) for a, b in pairs)
        results[label] = (count[1], count[2], count[0], len(pairs))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--code-only", action="store_true", help="only the code table")
    args = parser.parse_args()
    code_table()
    if args.code_only:
        return
    print(
        "| root | documents | MB | kept, web rules on everything | kept, by kind | kinds detected |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    totals = Counter()
    for root, texts in roots().items():
        size = sum(len(text) for _, text in texts)
        before = kept(texts, WEB_RULES_BEFORE_KINDS, by_kind=False)
        after = kept(texts, CleanConfig(), by_kind=True)
        kinds = Counter(detect_kind(text) for _, text in texts)
        totals.update(docs=len(texts), chars=size, before=before[1], after=after[1])
        print(
            f"| {root} | {len(texts)} | {size / 1e6:.2f} | {before[0]} docs, "
            f"{before[1] / size:.1%} of chars | {after[0]} docs, {after[1] / size:.1%} of chars "
            f"| {', '.join(f'{k} {n}' for k, n in kinds.most_common())} |"
        )
    chars = totals["chars"]
    print(
        f"| all | {totals['docs']} | {chars / 1e6:.2f} | {totals['before'] / chars:.1%} "
        f"| {totals['after'] / chars:.1%} | |"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for label, (one, both, none, pairs) in recall(Path(tmp)).items():
            print(
                f"near-copies, {label}: {one} of {pairs} pairs collapse to one document, "
                f"{both} keep both, {none} lose both"
            )


if __name__ == "__main__":
    main()
