"""The clean stage: raw folders → readers → cleaning steps → one part of cleaned JSONL.zst.

The raw input is one folder (`corpus.raw_dir`) or the folders of `corpus.sources`; with
several sources each document carries its source's name (`corpus`) and its file name is
prefixed with it, and a file's part is a hash of that prefixed name.

`clean_part` is what the Snakemake rule and the CLI call: kept documents go to the
part's output, every removed one to its rejected file with the step, rule and
detail that removed it, and the counts (per step, rule, kind and raw file) to its
stats JSON. The guide's `TextCleaner` and `DataCollector` (helox.guide) run the same
readers and steps.
"""

from __future__ import annotations

import logging
import os

from helox.common.io import JsonlWriter, write_json
from helox.common.progress import ProgressBar
from helox.data.clean_config import CleanConfig
from helox.data.corpus import RawInput, as_sources, part_of, read_sources, source_file_sizes
from helox.data.documents import Stats
from helox.data.filters import apply_steps, build_steps

log = logging.getLogger(__name__)


def clean_part(
    raw: RawInput,
    part: int,
    parts: int,
    config: CleanConfig,
    output: str | os.PathLike,
    rejected_output: str | os.PathLike,
    stats_output: str | os.PathLike,
) -> Stats:
    """Clean the raw files of one part; write kept and rejected documents and the stats JSON.

    `raw` is a folder or the list of `corpus.sources`.
    """
    if not 0 <= part < parts:
        raise ValueError(f"part {part} is out of range for {parts} parts (0 to {parts - 1})")
    sources = as_sources(raw)
    raw_dir = ", ".join(source.path for source in sources)
    steps = build_steps(config)
    stats = Stats()
    stats.register([step.name for step in steps])
    sizes = source_file_sizes(sources, lambda relative: part_of(relative, parts) == part)
    bar = ProgressBar(
        f"cleaning part {part} of {raw_dir}",
        sum(sizes.values()),
        "MB",
        scale=1e6,
        note=lambda: f"{stats.flow.documents_in:,} docs",
    )
    unfinished = 0

    def select(relative: str) -> bool:
        """Take the files of this part; count the previous one as read when the next begins."""
        nonlocal unfinished
        if part_of(relative, parts) != part:
            return False
        bar.update(unfinished)
        unfinished = sizes.get(relative, 0)
        return True

    documents = read_sources(sources, config, stats, select=select)
    with JsonlWriter(output) as kept, JsonlWriter(rejected_output) as rejected:
        for doc in documents:
            result, dropped = apply_steps(doc, steps, stats)
            if dropped is None:
                kept.write(result.record())
            else:
                rejected.write({**result.record(), **dropped.record()})
    bar.update(unfinished)
    bar.close()
    write_json(stats_output, {"part": part, "parts": parts, **stats.to_dict()})
    log.info(
        "part %d/%d of %s: kept %d of %d documents (%d bytes of %d); %d files read, %d skipped",
        part,
        parts,
        raw_dir,
        stats.flow.documents_out,
        stats.flow.documents_in,
        stats.flow.bytes_out,
        stats.flow.bytes_in,
        stats.files.read,
        stats.files.skipped,
    )
    removed = [
        f"{name} {counts.documents}" for name, counts in stats.removed.items() if counts.documents
    ]
    log.info("part %d/%d removed by step: %s", part, parts, ", ".join(removed) or "none")
    return stats
