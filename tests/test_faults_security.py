"""No code execution from files: a pickle that runs code when loaded, planted where Helox
expects a checkpoint or a model, is refused without running; and the code holds no
`torch.load` without `weights_only=True`, no pickle, no `eval`/`exec` and no shell."""

from __future__ import annotations

import ast
import logging
import os
import pickle
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError
from test_workflow import REPO

from helox.common.io import read_json, sha256_file, write_json
from helox.model.config import ModelConfig
from helox.model.folder import load_final, save_final
from helox.model.generate import Generator
from helox.model.network import create_model_from_config
from helox.model.weight_files import WeightFileError
from helox.train.checkpoint import (
    COMPLETE_FILE,
    MODEL_FILE,
    OPTIMIZER_FILE,
    RNG_FILE,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from helox.train.config import TrainingConfig

MODEL = ModelConfig(
    vocab_size=64, hidden_size=16, num_layers=1, num_attention_heads=2, max_position_embeddings=16
)
SCANNED = ("helox", "scripts", "workflow", "benchmarks", "Snakefile")


class Payload:
    """Unpickled, it creates the folder `marker`: proof that loading ran code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def plant(path: Path, marker: Path, how: str = "torch.save") -> None:
    """Write a file at `path` that creates `marker` when unpickled."""
    if how == "torch.save":
        torch.save(Payload(marker), path)
    else:
        path.write_bytes(pickle.dumps(Payload(marker), protocol=2))


@pytest.fixture
def marker(tmp_path: Path) -> Iterator[Path]:
    """The folder a payload would create; the test fails if it ever appears."""
    marker = tmp_path / "code-ran"
    yield marker
    assert not marker.exists(), "a planted pickle ran code"


@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_the_payload_is_real_and_weights_only_loading_refuses_it(tmp_path, marker, how) -> None:
    control = tmp_path / "control"
    plant(tmp_path / "control.pt", control, how)
    if how == "torch.save":
        torch.load(tmp_path / "control.pt", weights_only=False)
    else:
        pickle.loads((tmp_path / "control.pt").read_bytes())
    assert control.is_dir()  # the payload does run code when unpickled

    plant(tmp_path / "planted.pt", marker, how)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(tmp_path / "planted.pt", weights_only=True)


def checkpoints_with(folder: Path, planted_file: str, marker: Path) -> Path:
    """A real step_2 checkpoint and a step_4 whose `planted_file` is the payload, its
    COMPLETE marker rewritten to match, as a forger with write access would."""
    model = create_model_from_config(MODEL)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.zeros(1, 4, dtype=torch.long)).logits.sum().backward()
    optimizer.step()
    config = TrainingConfig(save_total_limit=5)
    good = save_checkpoint(folder, 2, model, optimizer, config, "run", {}, {"step": 2})
    forged = folder / "step_4"
    shutil.copytree(good, forged)
    plant(forged / planted_file, marker)
    recorded = read_json(forged / COMPLETE_FILE)
    recorded["files"][planted_file] = {
        "bytes": (forged / planted_file).stat().st_size,
        "sha256": sha256_file(forged / planted_file),
    }
    write_json(forged / COMPLETE_FILE, recorded)
    return forged


def test_a_planted_model_file_makes_resume_skip_the_checkpoint(tmp_path, marker, caplog) -> None:
    forged = checkpoints_with(tmp_path / "checkpoints", MODEL_FILE, marker)
    with caplog.at_level(logging.WARNING):
        assert latest_checkpoint(tmp_path / "checkpoints") == tmp_path / "checkpoints/step_2"
    assert f"skipping checkpoint {forged}" in caplog.text
    with pytest.raises(SafetensorError, match="header"):
        load_checkpoint(forged, create_model_from_config(MODEL))


@pytest.mark.parametrize("planted_file", [OPTIMIZER_FILE, RNG_FILE])
def test_a_planted_state_file_is_refused_on_loading(tmp_path, marker, planted_file) -> None:
    forged = checkpoints_with(tmp_path / "checkpoints", planted_file, marker)
    model = create_model_from_config(MODEL)
    with pytest.raises(SafetensorError, match="header"):
        load_checkpoint(forged, model, torch.optim.AdamW(model.parameters()))


def final_folder(tmp_path: Path, tokenizer: Path) -> Path:
    """A model folder as training writes it."""
    return save_final(tmp_path / "final", create_model_from_config(MODEL), MODEL, tokenizer, {})


def test_a_planted_model_folder_is_refused_by_loading_and_generation(
    tmp_path, marker, spm_model
) -> None:
    folder = final_folder(tmp_path, spm_model)
    plant(folder / MODEL_FILE, marker, "pickle")
    with pytest.raises(WeightFileError, match="not a safetensors file .*header"):
        load_final(folder)
    with pytest.raises(WeightFileError, match="not a safetensors file .*header"):
        Generator(folder, device="cpu")


@pytest.mark.parametrize("name", ["pytorch_model.bin", "ckpt.pt", "model.pt"])
def test_a_pickled_checkpoint_under_another_name_is_never_read(
    tmp_path, marker, name, spm_model
) -> None:
    step = tmp_path / "checkpoints/step_8"
    step.mkdir(parents=True)
    plant(step / name, marker)
    assert latest_checkpoint(tmp_path / "checkpoints") is None
    folder = final_folder(tmp_path, spm_model)
    (folder / MODEL_FILE).unlink()
    plant(folder / name, marker)
    with pytest.raises(FileNotFoundError):
        load_final(folder)


# ---------------------------------------------------------------------------- the code itself

PICKLING_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve"}
PICKLING_MODULES |= {"marshal"}
SHELL_CALLS = {"os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput"}
UNSAFE_YAML = {"yaml.unsafe_load", "yaml.full_load", "yaml.load_all", "yaml.unsafe_load_all"}


def dotted(node: ast.expr) -> str:
    """`a.b.c` for a name or attribute chain, else ""."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and (base := dotted(node.value)):
        return f"{base}.{node.attr}"
    return ""


def keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def is_true(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def python_findings(source: str) -> Iterator[tuple[int, str]]:
    """(line, what) for each way the Python `source` could run code taken from a file."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [alias.name for alias in node.names]
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                if name.split(".")[0] in PICKLING_MODULES:
                    yield node.lineno, f"imports {name}"
        if not isinstance(node, ast.Call):
            continue
        name = dotted(node.func)
        if name == "torch.load" and not is_true(keyword(node, "weights_only")):
            yield node.lineno, "torch.load without weights_only=True"
        if name in ("eval", "exec"):
            yield node.lineno, f"{name}()"
        if name in SHELL_CALLS or is_true(keyword(node, "shell")):
            yield node.lineno, "a shell command line"
        if is_true(keyword(node, "allow_pickle")) or name.endswith("read_pickle"):
            yield node.lineno, "loads pickles"
        loader = dotted(keyword(node, "Loader") or ast.Name("SafeLoader"))
        if name in UNSAFE_YAML or (name == "yaml.load" and "Safe" not in loader):
            yield node.lineno, "yaml that can build objects"


SNAKEMAKE_PATTERNS = {
    r"\bpickle\b|\bdill\b|allow_pickle\s*=\s*True": "loads pickles",
    r"torch\.load\((?![^)]*weights_only\s*=\s*True)": "torch.load without weights_only=True",
    r"(?<![\w.])(eval|exec)\(": "eval()/exec()",
    r"shell\s*=\s*True|os\.system\(|os\.popen\(": "a shell command line",
    r"^\s*shell:": "a shell: directive (paths would be interpolated into a command line)",
}


def snakemake_findings(source: str) -> Iterator[tuple[int, str]]:
    """The same for a Snakefile or .smk file, which Python's parser cannot read."""
    for number, line in enumerate(source.splitlines(), start=1):
        code = line.split("#", 1)[0]
        for pattern, what in SNAKEMAKE_PATTERNS.items():
            if re.search(pattern, code):
                yield number, what


def project_files() -> Iterator[Path]:
    for name in SCANNED:
        path = REPO / name
        yield from sorted(path.rglob("*")) if path.is_dir() else [path]


def test_no_code_in_the_project_can_run_code_from_a_file() -> None:
    findings, scanned = [], 0
    for path in project_files():
        if path.suffix == ".py":
            found = python_findings(path.read_text(encoding="utf-8"))
        elif path.suffix == ".smk" or path.name == "Snakefile":
            found = snakemake_findings(path.read_text(encoding="utf-8"))
        else:
            continue
        scanned += 1
        findings += [f"{path.relative_to(REPO)}:{line}: {what}" for line, what in found]
    assert scanned > 40
    assert findings == []


UNSAFE_PYTHON = """
import pickle
from dill import loads
import numpy as np, os, subprocess, torch, yaml
state = torch.load(path)
state = torch.load(path, weights_only=False)
value = eval(text)
exec(code)
subprocess.run(f"tar xf {path}", shell=True)
os.system("rm " + path)
array = np.load(path, allow_pickle=True)
config = yaml.load(text, Loader=yaml.Loader)
config = yaml.unsafe_load(text)
"""
SAFE_PYTHON = """
import numpy as np, subprocess, torch, yaml
state = torch.load(path, weights_only=True)
model.eval()
subprocess.run(["tar", "xf", path], check=True)
array = np.load(path, allow_pickle=False)
config = yaml.safe_load(text)
config = yaml.load(text, Loader=yaml.SafeLoader)
"""
UNSAFE_SNAKEMAKE = """
rule unpack:
    shell:
        "tar xf {input}"
    run:
        data = pickle.load(open(input[0], "rb"))
        state = torch.load(input[0])
        eval(params.expression)
        subprocess.run(cmd, shell=True)
"""


def test_the_scan_finds_each_unsafe_construct_and_passes_safe_ones() -> None:
    found = [what for _, what in python_findings(UNSAFE_PYTHON)]
    assert len(found) == 11, found
    assert list(python_findings(SAFE_PYTHON)) == []
    found = [what for _, what in snakemake_findings(UNSAFE_SNAKEMAKE)]
    assert len(found) == 5, found
    assert list(snakemake_findings("rule a:\n    script:\n        'x.py'\n")) == []
