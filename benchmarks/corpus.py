"""A real corpus for the benchmarks: the standard library's sources, as deduplicated parts."""

from __future__ import annotations

import tempfile
from pathlib import Path

from helox.common.io import JsonlWriter
from helox.data.stdlib import gather_stdlib


def stdlib_parts(
    folder: Path, max_bytes: int, copies: int = 1, parts: int = 1, sources: tuple[str, ...] = ()
) -> list[Path]:
    """Write the gathered standard library `copies` times (each copy made distinct) as JSONL.zst,
    its files dealt in turn to the corpus `sources` when some are named."""
    with tempfile.TemporaryDirectory() as raw:
        gather_stdlib(Path(raw) / "stdlib", max_bytes)
        files = sorted(p for p in (Path(raw) / "stdlib").rglob("*") if p.is_file())
        texts = [(str(p), p.read_text(encoding="utf-8")) for p in files if p.suffix == ".py"]
    paths = [folder / f"part-{i}.jsonl.zst" for i in range(parts)]
    writers = [JsonlWriter(path) for path in paths]
    for copy in range(copies):
        for index, (source, text) in enumerate(texts):
            record = {"text": f"# copy {copy}\n{text}", "source": source, "kind": "code"}
            if sources:
                record["corpus"] = sources[index % len(sources)]
            writers[(copy * len(texts) + index) % parts].write(record)
    for writer in writers:
        writer.close()
    return paths
