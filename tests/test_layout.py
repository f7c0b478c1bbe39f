"""The package's architecture, as its tree states it: one package per layer, each importing
only the layers below it, and no module too long to read in one sitting."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import helox

PACKAGE = Path(helox.__file__).parent
# From the ground up; a module may import its own layer and those before it.
LAYERS = ("common", "data", "tokens", "model", "train", "tune", "eval", "pipeline", "cli")
# The guide's classes face users as the CLI does: they may import any layer.
FACES = {"guide": len(LAYERS)}
MAX_LINES = 450
WORKFLOW = PACKAGE.parent / "workflow"


def layer_of(module: str) -> int:
    """The layer of `helox.<name>...`; the root package (its version) lies under all."""
    parts = module.split(".")
    if parts == ["helox"] or parts[1] == "__init__":
        return -1
    return FACES[parts[1]] if parts[1] in FACES else LAYERS.index(parts[1])


def imported_modules(path: Path) -> set[str]:
    """Every helox module that `path` imports, at any depth of its code."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("helox"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("helox"))
    return found


def module_name(path: Path) -> str:
    return ".".join(("helox", *path.relative_to(PACKAGE).with_suffix("").parts))


def test_every_module_lies_in_a_layer_package() -> None:
    for path in PACKAGE.rglob("*.py"):
        top = path.relative_to(PACKAGE).parts[0]
        assert top == "__init__.py" or top.removesuffix(".py") in (*LAYERS, *FACES), path


def test_imports_only_go_down_the_layers() -> None:
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_name(path)
        for target in imported_modules(path):
            if layer_of(target) > layer_of(module):
                upward.append(f"{module} imports {target}")
    assert not upward, "\n".join(upward)


def test_no_module_is_longer_than_one_sitting() -> None:
    long = {
        module_name(path): lines
        for path in PACKAGE.rglob("*.py")
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, long


def test_reading_the_workflow_imports_no_torch() -> None:
    """Every Snakemake start (a dry run, `helox status`) parses the workflow: what its rule files
    import of helox, every section's config among it, must not pull in torch (~2 s a start)."""
    rule_files = [PACKAGE.parent / "Snakefile", *WORKFLOW.glob("rules/*.smk")]
    imported = sorted(
        {
            name
            for path in rule_files
            for name in re.findall(r"^\s*from (helox[\w.]*) import", path.read_text(), re.M)
        }
    )
    assert "helox.pipeline.config" in imported
    check = f"import sys, {', '.join(imported)}; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert result.stdout.strip() == "False", (imported, result.stderr)
