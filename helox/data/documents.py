"""The unit the data stages pass around, and the counters every stage keeps about it.

A `Stats` object serialises to this layout (`to_dict`); the clean stage writes all of it,
the dedup stage the document counts (first five keys) plus a row per part:

    {
      "documents_in": int, "bytes_in": int, "documents_out": int, "bytes_out": int,
      "removed":  {step: {"documents": int, "bytes": int}},  # every step; bytes when dropped
      "modified": {step: {"documents": int, "bytes": int}},  # steps that changed text; net bytes
      "filters":  {step: {"documents_in", "bytes_in", "documents_out", "bytes_out"}},
      "rules":    {step: {rule: int}},     # removed documents by the rule that failed
      "counters": {step: {event: int}},    # what steps changed: lines dropped, redactions
      "kinds":    {kind: {"documents_in", "bytes_in", "documents_out", "bytes_out"}},
      "corpus":   {source name: {"documents_in", "bytes_in", "documents_out", "bytes_out"}},
      "sources":  {file: {"documents_in", "bytes_in", "documents_out", "bytes_out"}},
      "files":    {"seen": int, "read": int, "skipped": int},
      "skipped":  {"total": int, "by_reason": {reason: int},
                   "entries": [{"path": str, "line": int | None, "reason": str}],
                   "entries_omitted": int}
    }

The counts add up: documents_in = documents_out + the sum of removed documents;
bytes_in + the sum of modified bytes = bytes_out + the sum of removed bytes;
files seen = read + skipped. A step counts in `filters` only the documents of the
kinds it applies to. `corpus` has a row per `corpus.sources` entry; `sources` a row per
raw file (at most MAX_LISTED_SOURCES; the rest add up under OTHER_SOURCES). Skipped
entries (files, folders, JSONL lines, Parquet rows) never become documents, so they sit
outside the document counts.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any, Self, TypeVar

from helox.data.kinds import KINDS, REFLOWED_KINDS, Kind, detect_kind, paragraphs

__all__ = ["KINDS", "Document", "Kind", "Labels", "Stats", "TextView"]

# Skipped entries listed by name in a stats file; the counts by reason stay complete beyond it.
MAX_LISTED_SKIPS = 1000
# Raw files given their own row in `sources`; further files are summed under OTHER_SOURCES.
MAX_LISTED_SOURCES = 10_000
OTHER_SOURCES = "(other files)"


class TextView:
    """Splits of one text that several filters read, each made once, on first use."""

    def __init__(self, text: str, reflowed: bool = False):
        self.text = text
        self.reflowed = reflowed

    @cached_property
    def lines(self) -> list[str]:
        """The non-empty lines (blank lines are empty once whitespace is normalised); for a
        hard-wrapped kind, the re-flowed paragraphs instead."""
        if self.reflowed:
            return paragraphs(self.text)
        return list(filter(None, self.text.split("\n")))

    @cached_property
    def words(self) -> list[str]:
        """Whitespace-separated tokens, punctuation attached."""
        return self.text.split()

    @cached_property
    def lower(self) -> str:
        return self.text.lower()


@dataclass
class Document:
    """One text; `origin` is the raw file it was read from ("" when it came from elsewhere),
    `corpus` the name of the `corpus.sources` entry that holds that file.

    Treat it as immutable: steps return a changed copy (`dataclasses.replace`), so the
    cached `num_bytes` and `view` always describe `text`.
    """

    text: str
    source: str
    kind: Kind = "web"
    origin: str = ""
    corpus: str = ""

    @cached_property
    def num_bytes(self) -> int:
        return len(self.text.encode("utf-8"))

    @cached_property
    def view(self) -> TextView:
        return TextView(self.text, reflowed=self.kind in REFLOWED_KINDS)

    def record(self) -> dict[str, str]:
        """The JSONL form written by the clean and dedup stages."""
        return {"text": self.text, "source": self.source, "kind": self.kind, "corpus": self.corpus}


class Summable:
    """A dataclass of counts that adds in another of its class, field by field."""

    def add(self, other: Self) -> None:
        for name in (f.name for f in fields(self)):
            setattr(self, name, getattr(self, name) + getattr(other, name))


SummableT = TypeVar("SummableT", bound=Summable)


def _add_rows(
    total: dict[str, SummableT], rows: dict[str, SummableT], empty: type[SummableT]
) -> None:
    """Add each of `rows` into `total`'s row of the same name, an `empty()` one at first."""
    for name, row in rows.items():
        total.setdefault(name, empty()).add(row)


@dataclass
class Counts(Summable):
    documents: int = 0
    bytes: int = 0


@dataclass
class Flow(Summable):
    """Documents and bytes entering and leaving a stage, a step or a file."""

    documents_in: int = 0
    bytes_in: int = 0  # UTF-8 bytes of the documents' text, not of the files holding them
    documents_out: int = 0
    bytes_out: int = 0

    def count_in(self, size: int) -> None:
        self.documents_in += 1
        self.bytes_in += size

    def count_out(self, size: int) -> None:
        self.documents_out += 1
        self.bytes_out += size

    def to_dict(self) -> dict[str, int]:
        return {
            "documents_in": self.documents_in,
            "bytes_in": self.bytes_in,
            "documents_out": self.documents_out,
            "bytes_out": self.bytes_out,
        }


@dataclass
class FileCounts(Summable):
    seen: int = 0
    read: int = 0
    skipped: int = 0


@dataclass
class Stats:
    """What a stage did to its documents and files; `a + b` sums two parts."""

    flow: Flow = field(default_factory=Flow)
    removed: dict[str, Counts] = field(default_factory=dict)
    modified: dict[str, Counts] = field(default_factory=dict)
    filters: dict[str, Flow] = field(default_factory=dict)
    rules: dict[str, Counter[str]] = field(default_factory=dict)
    counters: dict[str, Counter[str]] = field(default_factory=dict)
    kinds: dict[str, Flow] = field(default_factory=dict)
    corpus: dict[str, Flow] = field(default_factory=dict)
    sources: dict[str, Flow] = field(default_factory=dict)
    files: FileCounts = field(default_factory=FileCounts)
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    skipped_entries: list[dict[str, Any]] = field(default_factory=list)
    skipped_omitted: int = 0

    def register(self, step_names: list[str]) -> None:
        """List these steps in `removed` and `filters`, in order, even if they never act."""
        for name in step_names:
            self.removed.setdefault(name, Counts())
            self.filters.setdefault(name, Flow())

    def count_in(self, doc: Document) -> None:
        for flow in self._flows_of(doc):
            flow.count_in(doc.num_bytes)

    def count_out(self, doc: Document) -> None:
        for flow in self._flows_of(doc):
            flow.count_out(doc.num_bytes)

    def _flows_of(self, doc: Document) -> list[Flow]:
        """The flows `doc` counts in: the stage's, its kind's, its corpus source's, its file's."""
        flows = [self.flow, self.kinds.setdefault(doc.kind, Flow())]
        if doc.corpus:
            flows.append(self.corpus.setdefault(doc.corpus, Flow()))
        if doc.origin:
            flows.append(self._source(doc.origin))
        return flows

    def count_removed(self, step: str, doc: Document, rule: str = "") -> None:
        self.removed.setdefault(step, Counts()).add(Counts(1, doc.num_bytes))
        if rule:
            self.rules.setdefault(step, Counter())[rule] += 1

    def count_modified(self, step: str, before: Document, after: Document) -> None:
        change = after.num_bytes - before.num_bytes
        self.modified.setdefault(step, Counts()).add(Counts(1, change))

    def step_flow(self, step: str) -> Flow:
        """The documents and bytes that went into and came out of one step."""
        return self.filters.setdefault(step, Flow())

    def tally(self, step: str) -> Counter[str]:
        """The counter a step adds its events to (lines dropped, addresses redacted)."""
        return self.counters.setdefault(step, Counter())

    def _source(self, origin: str) -> Flow:
        if origin not in self.sources and len(self.sources) >= MAX_LISTED_SOURCES:
            origin = OTHER_SOURCES
        return self.sources.setdefault(origin, Flow())

    def file_read(self) -> None:
        self.files.seen += 1
        self.files.read += 1

    def skip_file(self, path: str, reason: str) -> None:
        """A whole file was passed over: it counts as seen and skipped."""
        self.files.seen += 1
        self.files.skipped += 1
        self.skip_entry(path, reason)

    def skip_entry(self, path: str, reason: str, line: int | None = None) -> None:
        """A folder, a JSONL line, a Parquet row or the rest of a file was passed over."""
        self.skipped_by_reason[reason] = self.skipped_by_reason.get(reason, 0) + 1
        if len(self.skipped_entries) < MAX_LISTED_SKIPS:
            self.skipped_entries.append({"path": path, "line": line, "reason": reason})
        else:
            self.skipped_omitted += 1

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped_by_reason.values())

    def __add__(self, other: Stats) -> Stats:
        total = Stats()
        for part in (self, other):
            total.flow.add(part.flow)
            _add_rows(total.removed, part.removed, Counts)
            _add_rows(total.modified, part.modified, Counts)
            _add_rows(total.filters, part.filters, Flow)
            for name, rules in part.rules.items():
                total.rules.setdefault(name, Counter()).update(rules)
            for name, events in part.counters.items():
                total.tally(name).update(events)
            _add_rows(total.kinds, part.kinds, Flow)
            _add_rows(total.corpus, part.corpus, Flow)
            for origin, flow in part.sources.items():
                total._source(origin).add(flow)
            total.files.add(part.files)
            for reason, count in part.skipped_by_reason.items():
                total.skipped_by_reason[reason] = total.skipped_by_reason.get(reason, 0) + count
            room = MAX_LISTED_SKIPS - len(total.skipped_entries)
            total.skipped_entries.extend(part.skipped_entries[:room])
            total.skipped_omitted += part.skipped_omitted + max(0, len(part.skipped_entries) - room)
        return total

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.flow.to_dict(),
            "removed": {name: vars(counts).copy() for name, counts in self.removed.items()},
            "modified": {name: vars(counts).copy() for name, counts in self.modified.items()},
            "filters": {name: flow.to_dict() for name, flow in self.filters.items()},
            "rules": {name: dict(rules.most_common()) for name, rules in self.rules.items()},
            "counters": {
                name: dict(sorted(events.items()))
                for name, events in self.counters.items()
                if events
            },
            "kinds": {kind: self.kinds[kind].to_dict() for kind in sorted(self.kinds)},
            "corpus": {name: self.corpus[name].to_dict() for name in sorted(self.corpus)},
            "sources": {origin: self.sources[origin].to_dict() for origin in sorted(self.sources)},
            "files": vars(self.files).copy(),
            "skipped": {
                "total": self.skipped_total,
                "by_reason": dict(sorted(self.skipped_by_reason.items())),
                "entries": [dict(entry) for entry in self.skipped_entries],
                "entries_omitted": self.skipped_omitted,
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Stats:
        """Rebuild the counters from `to_dict` output (extra keys such as `part` are ignored)."""
        skipped = data.get("skipped", {})

        def flows(key: str) -> dict[str, Flow]:
            return {name: Flow(**flow) for name, flow in data.get(key, {}).items()}

        def counters(key: str) -> dict[str, Counter[str]]:
            return {name: Counter(counts) for name, counts in data.get(key, {}).items()}

        return cls(
            flow=Flow(**{key: data.get(key, 0) for key in vars(Flow())}),
            removed={name: Counts(**c) for name, c in data.get("removed", {}).items()},
            modified={name: Counts(**c) for name, c in data.get("modified", {}).items()},
            filters=flows("filters"),
            rules=counters("rules"),
            counters=counters("counters"),
            kinds=flows("kinds"),
            corpus=flows("corpus"),
            sources=flows("sources"),
            files=FileCounts(**data.get("files", {})),
            skipped_by_reason=dict(skipped.get("by_reason", {})),
            skipped_entries=[dict(entry) for entry in skipped.get("entries", [])],
            skipped_omitted=skipped.get("entries_omitted", 0),
        )


@dataclass(frozen=True)
class Labels:
    """What a source gives each of its documents: its name, a prefix for the file names
    (the name and a slash when several sources mix), and its declared kind ("" detects)."""

    corpus: str = ""
    prefix: str = ""
    kind: str = ""

    def document(self, text: str, source: str, relative: str, kind: str = "") -> Document:
        """A document of this source; `kind` is its record's own, else the source's, else
        code for a code file (passed in as "code"), else detected."""
        chosen = kind or self.kind or detect_kind(text)
        return Document(text, self.prefix + source, chosen, self.prefix + relative, self.corpus)
