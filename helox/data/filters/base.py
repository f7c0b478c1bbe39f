"""The step protocol: a small named object that keeps, changes or drops one document.

`apply_steps` runs steps in order and counts, under each step's `name`, what went
into it and came out, what it removed (and by which rule) and what it changed, so a
new step needs nothing but its own class and a line in `build_steps`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass
from typing import ClassVar, Generic, TypeVar

from helox.data.documents import KINDS, Document, Stats

SectionT = TypeVar("SectionT")


@dataclass(frozen=True)
class Drop:
    """Why a step removed a document: the step, the rule that failed, and by how much."""

    step: str
    rule: str
    detail: str = ""

    def record(self) -> dict[str, str]:
        """The fields a rejected document carries next to its text."""
        return {"reason": self.step, "rule": self.rule, "detail": self.detail}


class Step(ABC):
    """One cleaning step; `name` is what its counts are filed under, `kinds` what it reads."""

    name: ClassVar[str]
    kinds: ClassVar[frozenset[str]] = frozenset(KINDS)

    @abstractmethod
    def __call__(self, doc: Document, tally: Counter[str]) -> Document | Drop:
        """Return `doc`, a changed copy of it, or a Drop; count events (lines cut...) in `tally`."""

    def drop(self, rule: str, detail: str = "") -> Drop:
        return Drop(self.name, rule, detail)


class ConfiguredStep(Step, Generic[SectionT]):
    """A step set by its own section of the clean config; a section that lists `kinds` names
    the kinds of text the step reads."""

    def __init__(self, config: SectionT):
        self.config = config
        if hasattr(config, "kinds"):
            self.kinds = frozenset(config.kinds)


def apply_steps(doc: Document, steps: list[Step], stats: Stats) -> tuple[Document, Drop | None]:
    """Run `doc` through the steps for its kind; return its last version and the Drop, if any.

    Every document is counted in, and then either out or removed by one step.
    """
    stats.count_in(doc)
    for step in steps:
        if doc.kind not in step.kinds:
            continue
        flow = stats.step_flow(step.name)
        flow.count_in(doc.num_bytes)
        result = step(doc, stats.tally(step.name))
        if isinstance(result, Drop):
            stats.count_removed(step.name, doc, result.rule)
            return doc, result
        if result is not doc:
            stats.count_modified(step.name, doc, result)
            doc = result
        flow.count_out(doc.num_bytes)
    stats.count_out(doc)
    return doc, None


def ratio(part: float, whole: float) -> float:
    """`part / whole`, or 0 for an empty whole."""
    return part / whole if whole else 0.0
