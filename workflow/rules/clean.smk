# Scatter: part {part} of the raw folders (corpus.sources or raw_dir), read, normalised and
# filtered by kind of text; every removed document goes to rejected/ with its reason, the
# counts per filter, kind, source and file to the stats.

import functools

from helox.data.corpus import raw_listings

# Per part, a digest of the names, sizes and times of the raw files it reads: an added,
# removed or edited file reruns its part (a folder's own time misses changes below its top
# level). Not for the gathered standard library, which is a rule's output. The corpus is
# walked once, when a clean job's params are first asked for, so an invocation without
# clean jobs (a Slurm job of a later stage) never walks it.
USER_CORPUS = bool(config["corpus"]["raw_dir"] or config["corpus"]["sources"])


@functools.cache
def parts_raw_listings() -> dict[int, str]:
    return raw_listings(SOURCES, len(PARTS)) if USER_CORPUS else {}


rule clean:
    input:
        RAW_DIRS,
    output:
        kept="results/clean/part-{part}.jsonl.zst",
        rejected="results/clean/rejected/part-{part}.jsonl.zst",
        stats="results/clean/part-{part}.stats.json",
    params:
        clean=config["clean"],
        sources=CLEAN_SOURCES,
        raw_listing=lambda wildcards: parts_raw_listings().get(int(wildcards.part), ""),
    log:
        "logs/clean/part-{part}.log",
    benchmark:
        "logs/benchmarks/clean/part-{part}.tsv"
    conda:
        "../../envs/data.yaml"
    script:
        "../../scripts/clean.py"
