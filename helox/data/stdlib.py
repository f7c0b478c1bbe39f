"""The default corpus: the running interpreter's standard library, as text and as SFT pairs.

`gather_stdlib` copies a deterministic, diverse sample of its source files into a
raw folder, with a `.manifest.json` inside it (hidden, so the readers skip it).
`derive_sft_pairs` turns its documented public functions into instruction/response
pairs, reading them with `ast` only: nothing is imported or run.
"""

from __future__ import annotations

import ast
import hashlib
import heapq
import logging
import os
import platform
import re
import shutil
import sys
import sysconfig
import textwrap
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helox.common.io import JsonlWriter, atomic_path, write_json

log = logging.getLogger(__name__)

SOURCE_EXTENSIONS = (".py", ".txt", ".rst")
EXCLUDED_FOLDERS = frozenset(
    {"site-packages", "dist-packages", "test", "tests", "idlelib", "__pycache__"}
)
MAX_FILE_BYTES = 500_000
MANIFEST_NAME = ".manifest.json"

# Sentence starts read as an imperative verb ("Return the ...") and turned into "returns the ...".
DOCSTRING_VERBS = frozenset(
    """
    accept acquire add adjust append apply ask build calculate call cancel change check
    clear close collect combine compare compile compute configure connect construct convert
    copy count create decode delete determine disable display do dump edit emit enable
    encode ensure escape evaluate execute expand extend extract fetch fill filter find
    finish flush format generate get guess handle indicate initialize insert install iterate
    join list load locate lock log look make map mark match merge modify move normalize
    notify open pack parse perform pop prepare print process produce push put quote raise
    read receive register release remove rename render replace report reset resolve restore
    retrieve return run save search seek select send serialize set show skip sort split
    start stop store strip submit take tell terminate test translate truncate try turn
    unlock unpack unquote unregister update validate verify wait walk wrap write yield
    """.split()  # noqa: SIM905 (a word list reads best as words)
)
SIGNATURE_LINE = re.compile(r"^[\w.]+\(.*\)(\s*->.*)?$")
SENTENCE_END = re.compile(r"(?<=[.!?])\s")
MAX_REQUEST_CHARS = 300


@dataclass(frozen=True)
class SourceFile:
    relative: str
    path: Path
    size: int


def stdlib_root() -> Path:
    """The running interpreter's standard-library folder."""
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(root: Path) -> list[SourceFile]:
    """The library's source files in a diverse, deterministic order (by a hash of their path)."""
    files = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = [
            name for name in subfolders if name not in EXCLUDED_FOLDERS and not name.startswith(".")
        ]
        for name in names:
            path = Path(folder, name)
            if not name.endswith(SOURCE_EXTENSIONS) or path.is_symlink():
                continue
            size = path.stat().st_size
            if size <= MAX_FILE_BYTES:
                files.append(SourceFile(path.relative_to(root).as_posix(), path, size))
    if not files:
        raise FileNotFoundError(f"no standard-library source files (.py/.txt/.rst) under {root}")
    return sorted(files, key=lambda source: _hash_key(source.relative))


def gather_stdlib(
    output_dir: str | os.PathLike, max_bytes: int, root: Path | None = None
) -> dict[str, Any]:
    """Copy up to `max_bytes` of standard-library sources into `output_dir`; return the manifest.

    Files are taken in hash order, skipping any that would overrun the budget, so the
    same interpreter and budget always give the same folder. The manifest is also
    written to `output_dir/.manifest.json`.
    """
    root = root or stdlib_root()
    copied_files = 0
    copied_bytes = 0
    with atomic_path(output_dir) as tmp:
        tmp.mkdir()
        for source in stdlib_files(root):
            if copied_bytes + source.size > max_bytes:
                continue
            target = tmp / source.relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source.path, target)
            copied_files += 1
            copied_bytes += source.size
        manifest = {
            "python_version": platform.python_version(),
            "implementation": sys.implementation.name,
            "stdlib": str(root),
            "max_bytes": max_bytes,
            "files": copied_files,
            "bytes": copied_bytes,
        }
        write_json(tmp / MANIFEST_NAME, manifest)
    log.info(
        "gathered %d standard-library files (%d bytes) into %s",
        copied_files,
        copied_bytes,
        output_dir,
    )
    return manifest


def derive_sft_pairs(
    output_path: str | os.PathLike,
    max_pairs: int,
    max_response_chars: int,
    seed: int,
    root: Path | None = None,
) -> int:
    """Write up to `max_pairs` {"instruction", "response", "source"} lines; return how many.

    Every documented public function or method whose source fits in
    `max_response_chars` is a candidate; the kept ones are those with the smallest
    seeded hash of their source, written in that (shuffled) order.
    """
    root = root or stdlib_root()
    kept: list[tuple[int, str, str, str]] = []  # (-hash, source, instruction, response): a max-heap
    for source_file in stdlib_files(root):
        if not source_file.relative.endswith(".py"):
            continue
        for source, instruction, response in pairs_from_file(source_file, max_response_chars):
            item = (-_hash_key(f"{seed}:{source}"), source, instruction, response)
            if len(kept) < max_pairs:
                heapq.heappush(kept, item)
            elif item > kept[0]:
                heapq.heapreplace(kept, item)
    with JsonlWriter(output_path) as writer:
        for _, source, instruction, response in sorted(kept, reverse=True):
            writer.write({"instruction": instruction, "response": response, "source": source})
    log.info("derived %d instruction pairs from %s into %s", len(kept), root, output_path)
    return len(kept)


def pairs_from_file(
    source_file: SourceFile, max_response_chars: int
) -> Iterator[tuple[str, str, str]]:
    """Yield (source, instruction, response) for each usable function in one module."""
    try:
        with tokenize.open(source_file.path) as handle:
            code = handle.read()
        tree = ast.parse(code)
        lines = code.split("\n")
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError) as error:
        log.debug("%s: not parsed (%s)", source_file.relative, error)
        return
    for node, owner in _public_functions(tree):
        docstring = ast.get_docstring(node)
        if not docstring or len(node.body) < 2:
            continue
        request = _request(docstring)
        response = _function_source(lines, node)
        if request is None or response is None or len(response) > max_response_chars:
            continue
        yield f"{source_file.relative}:{node.lineno}", _instruction(node, owner, request), response


def _public_functions(
    tree: ast.Module,
) -> Iterator[tuple[ast.FunctionDef | ast.AsyncFunctionDef, str | None]]:
    """Module-level functions, and methods of module-level classes, with public names."""
    functions = (ast.FunctionDef, ast.AsyncFunctionDef)
    for node in tree.body:
        if isinstance(node, functions) and not node.name.startswith("_"):
            yield node, None
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            for member in node.body:
                if isinstance(member, functions) and not member.name.startswith("_"):
                    yield member, node.name


def _function_source(lines: list[str], node: ast.FunctionDef | ast.AsyncFunctionDef) -> str | None:
    """The function's source lines with its decorators, dedented; None unless it parses alone."""
    first = (node.decorator_list[0] if node.decorator_list else node).lineno - 1
    last = (node.end_lineno or node.lineno) - 1
    end = lines[last].encode("utf-8")[: node.end_col_offset].decode("utf-8")
    source = textwrap.dedent("\n".join([*lines[first:last], end]))
    try:
        ast.parse(source)
    except SyntaxError:
        return None
    return source


def _request(docstring: str) -> str | None:
    """The docstring's first paragraph, on one line and ending in a full stop."""
    paragraphs = [" ".join(p.split()) for p in docstring.strip().split("\n\n") if p.strip()]
    if paragraphs and (SIGNATURE_LINE.match(paragraphs[0]) or " -> " in paragraphs[0]):
        paragraphs = paragraphs[1:]
    if not paragraphs:
        return None
    request = paragraphs[0]
    if len(request) > MAX_REQUEST_CHARS:
        request = SENTENCE_END.split(request, maxsplit=1)[0]
        if len(request) > MAX_REQUEST_CHARS:
            return None
    return request if request.endswith((".", "!", "?")) else request + "."


def _instruction(
    node: ast.FunctionDef | ast.AsyncFunctionDef, owner: str | None, request: str
) -> str:
    """Build e.g. "Write a Python function `f(x) -> int` that returns ..." from the request."""
    returns = f" -> {ast.unparse(node.returns)}" if node.returns else ""
    signature = f"{node.name}({ast.unparse(node.args)}){returns}"
    if owner is not None:
        what = f"a Python method `{owner}.{signature}`"
    elif isinstance(node, ast.AsyncFunctionDef):
        what = f"an async Python function `{signature}`"
    else:
        what = f"a Python function `{signature}`"
    first_word, _, rest = request.partition(" ")
    verb = first_word.lower()
    if first_word.istitle() and first_word.isalpha():
        if verb in DOCSTRING_VERBS:
            return f"Write {what} that {_third_person(verb)} {rest}".rstrip()
        if _base_form(verb) in DOCSTRING_VERBS:
            return f"Write {what} that {verb} {rest}".rstrip()
    return f"Write {what} described as follows: {request}"


def _base_form(verb: str) -> str | None:
    """'returns' → 'return', 'matches' → 'match', 'copies' → 'copy'; None if not in that form."""
    candidates = [verb[:-1]] if verb.endswith("s") else []
    if verb.endswith("es"):
        candidates.append(verb[:-2])
    if verb.endswith("ies"):
        candidates.append(verb[:-3] + "y")
    return next((c for c in candidates if c in DOCSTRING_VERBS), None)


def _third_person(verb: str) -> str:
    """'return' → 'returns', 'copy' → 'copies', 'match' → 'matches'."""
    if verb.endswith(("s", "sh", "ch", "x", "z", "o")):
        return verb + "es"
    if verb.endswith("y") and verb[-2:-1] not in "aeiou":
        return verb[:-1] + "ies"
    return verb + "s"


def _hash_key(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")
