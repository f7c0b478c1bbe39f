"""Cleaning by kind of text, on real prose: hard-wrapped books and documentation keep at least
90% of their characters where web rules on everything keep a fraction; web spam and
boilerplate stay rejected; the kind is detected, or named by the source."""

from __future__ import annotations

import pydoc_data.topics
import sysconfig
from pathlib import Path

import pytest

from helox.common.io import iter_jsonl
from helox.data.clean import clean_part
from helox.data.clean_config import CleanConfig
from helox.data.corpus import SourceConfig
from helox.data.documents import Document, Stats
from helox.data.filters import (
    C4Config,
    FineWebConfig,
    GopherQualityConfig,
    GopherRepetitionConfig,
    ParagraphQualityConfig,
    apply_steps,
    build_steps,
)
from helox.data.kinds import detect_kind, paragraphs

LICENSES = Path("/usr/share/common-licenses")
PYTHON_LICENSE = Path(sysconfig.get_paths()["stdlib"]) / "LICENSE.txt"


def real_prose() -> list[tuple[str, str]]:
    """Long-form prose and documentation this machine ships, as (name, text): Python's own
    reference documentation (pydoc's topics), its licence, and the common licences."""
    found = [(f"pydoc-{name}", text) for name, text in sorted(pydoc_data.topics.topics.items())]
    if PYTHON_LICENSE.is_file():
        found.append(("python-license", PYTHON_LICENSE.read_text(encoding="utf-8")))
    if LICENSES.is_dir():
        for path in sorted(LICENSES.iterdir()):
            if path.is_file() and not path.is_symlink():
                found.append((f"license-{path.name}", path.read_text(encoding="utf-8")))
    return found


def kept_share(texts: list[tuple[str, str]], config: CleanConfig, kind: str | None) -> float:
    """The share of characters kept by the clean steps, each text of `kind` or detected."""
    steps = build_steps(config)
    stats = Stats()
    kept = total = 0
    for name, text in texts:
        doc = Document(text, name, kind or detect_kind(text))
        result, dropped = apply_steps(doc, steps, stats)
        total += len(text)
        kept += len(result.text) if dropped is None else 0
    return kept / total


WEB_RULES_EVERYWHERE = CleanConfig(
    gopher_repetition=GopherRepetitionConfig(kinds=["web"]),
    gopher_quality=GopherQualityConfig(kinds=["web"]),
    c4=C4Config(kinds=["web"]),
    fineweb=FineWebConfig(kinds=["web"]),
    paragraph_quality=ParagraphQualityConfig(enabled=False),
)


def test_books_and_documentation_keep_nine_tenths_of_their_characters() -> None:
    texts = real_prose()
    assert sum(map(len, (text for _, text in texts))) > 400_000
    before = kept_share(texts, WEB_RULES_EVERYWHERE, "web")  # the clean stage before kinds
    after = kept_share(texts, CleanConfig(), None)
    assert after >= 0.9
    assert before < 0.5
    licences = [(name, text) for name, text in texts if "license" in name]
    assert kept_share(licences, CleanConfig(), None) >= 0.9
    documentation = [(name, text) for name, text in texts if name.startswith("pydoc-")]
    assert kept_share(documentation, CleanConfig(), None) >= 0.9


def test_hard_wrapped_prose_and_documentation_are_not_taken_for_web_text() -> None:
    kinds = [detect_kind(text) for _, text in real_prose()]
    assert kinds.count("web") <= 0.05 * len(kinds)
    assert detect_kind(PYTHON_LICENSE.read_text(encoding="utf-8")) == "prose"
    assert detect_kind("Title\n=====\n\n* one item\n* another item\n\n.. note:: read it") == "docs"
    one_paragraph_a_line = "\n".join(
        f"This sentence number {i} is a whole paragraph of a web page, as extracted." * 2
        for i in range(10)
    )
    assert detect_kind(one_paragraph_a_line) == "web"
    assert detect_kind("\n".join(f"row {i}: {i * i}" for i in range(40))) == "web"


def test_reflowing_joins_the_lines_of_a_paragraph() -> None:
    text = "A sentence broken\nover two lines.\n\n  Next\tparagraph  \n\n\n"
    assert paragraphs(text) == ["A sentence broken over two lines.", "Next paragraph"]
    doc = Document(text, "t.txt", "prose")
    assert doc.view.lines == paragraphs(text)
    assert Document(text, "t.txt", "web").view.lines[0] == "A sentence broken"


def wrap(words: list[str], width: int = 66) -> str:
    """Words hard-wrapped into lines of about `width` characters."""
    lines, line = [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join([*lines, line])


NAVIGATION = "\n".join(
    ["Home", "About us", "Products", "Contact", "Login", "Privacy Policy", "Terms of Use"] * 6
)
SPAM = {
    "boilerplate page": NAVIGATION
    + "\nWe use cookies to improve your experience on this website and to show you offers."
    + "\nClick here to accept all cookies and continue to the shop with the best prices.",
    "keyword stuffing": " ".join(["buy cheap watches online best cheap watch deals"] * 60),
    "lorem ipsum page": "Welcome to our store.\n"
    + "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\n" * 3
    + "The team is happy to hear from you and to answer all of your questions today.",
    "link farm": " ".join(f"https://spam.example/page/{i}" for i in range(40))
    + " the best links of the web to click and to share with all of your friends",
    "hard-wrapped filler": wrap(
        ["lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit"] * 50
    ),
    "hard-wrapped copy-paste": "\n\n".join(
        [wrap(("win a free phone now and claim the prize that is waiting for you " * 3).split())]
        * 8
    ),
}


@pytest.mark.parametrize("case", sorted(SPAM))
def test_web_spam_and_boilerplate_stay_rejected(case: str) -> None:
    text = SPAM[case]
    steps = build_steps(CleanConfig())
    _, dropped = apply_steps(Document(text, case, detect_kind(text)), steps, Stats())
    assert dropped is not None, f"{case} was kept as {detect_kind(text)}"


def test_a_source_kind_overrides_detection_and_documents_count_per_kind(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    texts = dict(real_prose()[:20])
    for name, text in texts.items():
        (raw / f"{name}.txt").write_text(text, encoding="utf-8")
    for kind in ("web", ""):
        out = tmp_path / (kind or "detected")
        source = SourceConfig(name="reference", path=str(raw), kind=kind)
        stats = clean_part(
            [source], 0, 1, CleanConfig(), out / "k.zst", out / "r.zst", out / "s.json"
        )
        kept = list(iter_jsonl(out / "k.zst"))
        assert {record["corpus"] for record in kept} == {"reference"}
        assert stats.corpus["reference"].documents_in == len(texts)
        if kind == "web":
            assert set(stats.kinds) == {"web"}
            web_kept = stats.flow.bytes_out
        else:
            detected = {kind: flow.documents_in for kind, flow in stats.kinds.items()}
            assert detected.get("web", 0) <= 1 and sum(detected.values()) == len(texts)
            assert stats.flow.bytes_out > 2 * web_kept
