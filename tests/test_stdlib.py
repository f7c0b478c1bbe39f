"""The embedded corpus: a real, deterministic, budgeted slice of the standard library."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from helox.common.io import read_json
from helox.data.clean_config import CleanConfig
from helox.data.documents import Stats
from helox.data.readers import read_documents
from helox.data.stdlib import (
    EXCLUDED_FOLDERS,
    MANIFEST_NAME,
    derive_sft_pairs,
    gather_stdlib,
    stdlib_root,
)

BUDGET = 300_000


def listing(folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def gathered(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("stdlib") / "raw"
    gather_stdlib(folder, BUDGET)
    return folder


def test_gather_copies_real_files_within_budget(gathered: Path) -> None:
    files = listing(gathered)
    manifest = json.loads(files.pop(MANIFEST_NAME))
    assert manifest["files"] == len(files) > 10
    assert manifest["bytes"] == sum(len(data) for data in files.values()) <= BUDGET
    assert manifest["bytes"] > BUDGET * 0.9
    assert manifest["python_version"].count(".") == 2
    root = stdlib_root()
    for relative, data in files.items():
        assert relative.endswith((".py", ".txt", ".rst"))
        assert not EXCLUDED_FOLDERS & set(relative.split("/")[:-1])
        assert (root / relative).read_bytes() == data
    assert len({relative.split("/")[0] for relative in files if "/" in relative}) >= 3


def test_gather_is_deterministic_and_replaces_the_folder(gathered: Path, tmp_path: Path) -> None:
    again = tmp_path / "raw"
    (again / "stale").mkdir(parents=True)
    (again / "stale" / "old.txt").write_text("left over from an earlier run")
    manifest = gather_stdlib(again, BUDGET)
    assert listing(again) == listing(gathered)
    assert manifest == read_json(again / MANIFEST_NAME)
    smaller = gather_stdlib(tmp_path / "small", 50_000)
    assert smaller["bytes"] <= 50_000
    assert not list(tmp_path.glob(".*.tmp"))


def test_readers_skip_the_manifest(gathered: Path) -> None:
    stats = Stats()
    docs = list(read_documents(gathered, CleanConfig(), stats))
    manifest = read_json(gathered / MANIFEST_NAME)
    assert stats.skipped_by_reason == {"hidden": 1}
    assert stats.files.read == manifest["files"] == len(docs)
    assert all(MANIFEST_NAME not in doc.source for doc in docs)


def test_derive_sft_pairs(gathered: Path, tmp_path: Path) -> None:
    output = tmp_path / "pairs.jsonl"
    count = derive_sft_pairs(output, 10_000, 1500, seed=7, root=gathered)
    pairs = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert count == len(pairs) > 5
    for pair in pairs:
        assert set(pair) == {"instruction", "response", "source"}
        assert len(pair["response"]) <= 1500
        function = ast.parse(pair["response"]).body[0]
        assert isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef)
        assert not function.name.startswith("_")
        assert ast.get_docstring(function)
        assert pair["instruction"].startswith("Write ")
        assert f"{function.name}(" in pair["instruction"]
        path, line = pair["source"].rsplit(":", 1)
        assert (gathered / path).is_file() and int(line) >= 1

    same = tmp_path / "same.jsonl"
    derive_sft_pairs(same, 10_000, 1500, seed=7, root=gathered)
    assert same.read_bytes() == output.read_bytes()

    capped = tmp_path / "capped.jsonl"
    assert derive_sft_pairs(capped, 5, 1500, seed=7, root=gathered) == 5
    assert capped.read_text().splitlines() == output.read_text().splitlines()[:5]

    reseeded = tmp_path / "reseeded.jsonl"
    derive_sft_pairs(reseeded, 10_000, 1500, seed=8, root=gathered)
    assert reseeded.read_text() != output.read_text()
    assert sorted(reseeded.read_text().splitlines()) == sorted(output.read_text().splitlines())


def test_instructions_read_as_requests(tmp_path: Path) -> None:
    module = tmp_path / "lib" / "sample.py"
    module.parent.mkdir()
    module.write_text(
        "import functools\n\n"
        "def copy_tree(src: str, dst: str) -> int:\n"
        '    """Copy a folder tree.\n\n    Longer details.\n    """\n'
        "    return 0\n\n\n"
        "async def fetch(url):\n"
        '    """Returns the body found at url."""\n'
        "    return url\n\n\n"
        "def _private():\n"
        '    """Return nothing."""\n'
        "    return None\n\n\n"
        "class Box:\n"
        "    @functools.cache\n"
        "    def area(self):\n"
        '        """The area of the box."""\n'
        "        return 1\n\n"
        "    def stub(self):\n"
        '        """Only a docstring."""\n\n\n'
        "def undocumented():\n"
        "    return 1\n",
        encoding="utf-8",
    )
    output = tmp_path / "pairs.jsonl"
    assert derive_sft_pairs(output, 10, 2000, seed=0, root=tmp_path / "lib") == 3
    pairs = {
        pair["source"]: pair
        for pair in map(json.loads, output.read_text(encoding="utf-8").splitlines())
    }
    assert pairs["sample.py:3"]["instruction"] == (
        "Write a Python function `copy_tree(src: str, dst: str) -> int` that copies a folder tree."
    )
    assert pairs["sample.py:11"]["instruction"] == (
        "Write an async Python function `fetch(url)` that returns the body found at url."
    )
    assert pairs["sample.py:23"]["instruction"] == (
        "Write a Python method `Box.area(self)` described as follows: The area of the box."
    )
    assert pairs["sample.py:23"]["response"].startswith("@functools.cache\ndef area(self):\n")
