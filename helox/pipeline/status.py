"""Which stages are up to date and which would rerun, and why, from Snakemake's own summary.

`snakemake --detailed-summary` lists every output of the DAG with the rule that makes it,
the inputs it was last made from, its status and whether an update is pending; this
module folds that into one line per stage, in pipeline order.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

# Snakemake's summary status of an output, as the reason its job would rerun.
REASONS = {
    "missing": "output missing",
    "updated input files": "an input is newer than the output",
    "rule implementation changed": "its code changed",
    "set of input files changed": "its set of input files changed",
    "params changed": "its config section changed",
}
OTHER_REASON = "Snakemake plans a rerun (an incomplete output or a changed software environment)"
NO_SNAKEFILE_HINT = (
    "\nRun helox status in the Helox repository, where the Snakefile is, or name it: "
    "helox status -- --snakefile PATH/Snakefile --directory RESULTS_PARENT"
)


@dataclass
class StageStatus:
    """One rule of the DAG: its outputs, those that would be rebuilt, and why."""

    stage: str
    outputs: int = 0
    outdated: int = 0
    reasons: dict[str, str] = field(default_factory=dict)  # reason -> an example output

    @property
    def up_to_date(self) -> bool:
        return self.outdated == 0


class StatusError(RuntimeError):
    """Snakemake could not summarise the workflow; the message carries what it said."""


def detailed_summary(snakemake_args: Sequence[str]) -> list[dict[str, str]]:
    """The rows of `snakemake --detailed-summary ARGS` (no job runs)."""
    command = [sys.executable, "-m", "snakemake", "--detailed-summary", *snakemake_args]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        hint = NO_SNAKEFILE_HINT if "No Snakefile found" in result.stderr else ""
        raise StatusError(f"{' '.join(command)} failed:\n{result.stderr[-3000:].strip()}{hint}")
    lines = result.stdout.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("output_file\t")), None)
    if start is None:
        raise StatusError(f"no summary in the output of {' '.join(command)}")
    return list(csv.DictReader(lines[start:], delimiter="\t", quoting=csv.QUOTE_NONE))


def recorded_inputs(row: dict[str, str]) -> list[str]:
    """The inputs an output was last made from ("-": none recorded)."""
    inputs = row["input-file(s)"]
    return [] if inputs == "-" else inputs.split(",")


def pipeline_order(rows: list[dict[str, str]]) -> list[str]:
    """The rules, each after the rules whose outputs it was made from."""
    producer = {row["output_file"]: row["rule"] for row in rows}
    needs: dict[str, set[str]] = {}
    for row in rows:
        upstream = {producer[f] for f in recorded_inputs(row) if f in producer}
        needs.setdefault(row["rule"], set()).update(upstream - {row["rule"]})
    ordered: list[str] = []
    while len(ordered) < len(needs):
        waiting = [rule for rule in needs if rule not in ordered]
        ready = [rule for rule in waiting if needs[rule] <= set(ordered)]
        ordered += ready or waiting[:1]
    return ordered


def why(row: dict[str, str], producer: dict[str, str], pending: set[str]) -> str:
    """The reason one pending output would be rebuilt."""
    if row["status"] in REASONS:
        return REASONS[row["status"]]
    rebuilt = sorted({producer[f] for f in recorded_inputs(row) if f in pending})
    if rebuilt:
        return "inputs are rebuilt by " + ", ".join(rebuilt)
    return OTHER_REASON if row["status"] == "ok" else row["status"]


def stage_status(rows: list[dict[str, str]]) -> list[StageStatus]:
    """One status per rule of the summary, in pipeline order."""
    producer = {row["output_file"]: row["rule"] for row in rows}
    pending = {row["output_file"] for row in rows if row["plan"] != "no update"}
    stages = {rule: StageStatus(rule) for rule in pipeline_order(rows)}
    for row in rows:
        stage = stages[row["rule"]]
        stage.outputs += 1
        if row["output_file"] in pending:
            stage.outdated += 1
            stage.reasons.setdefault(why(row, producer, pending), row["output_file"])
    return list(stages.values())


def format_status(stages: list[StageStatus]) -> str:
    """A table: stage, outputs, up to date or would rerun, and why (with an example output)."""
    width = max([len("stage"), *(len(s.stage) for s in stages)])
    lines = [f"{'stage':<{width}}  {'outputs':>7}  state"]
    for stage in stages:
        state = "up to date" if stage.up_to_date else f"would rerun ({stage.outdated} outdated)"
        lines.append(f"{stage.stage:<{width}}  {stage.outputs:>7}  {state}")
        for reason, example in stage.reasons.items():
            lines.append(f"{'':<{width}}  {'':>7}    because {reason} ({example})")
    return "\n".join(lines)


def status(snakemake_args: Sequence[str] = ()) -> list[StageStatus]:
    """Every stage of the DAG that `snakemake ARGS` would build, up to date or not."""
    return stage_status(detailed_summary(snakemake_args))
