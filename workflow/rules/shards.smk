# Scatter: shards job {part} tokenizes dedup parts {part}, {part} + shards.parts, ...
# into one Arrow file per split; gather: the manifest.

from helox.shards import SPLITS, inputs_of_part

SHARD_PARTS = list(range(config["shards"]["parts"]))


def dedup_parts_of(wildcards):
    """The deduplicated parts that one shards job takes."""
    chosen = inputs_of_part(PARTS, int(wildcards.part), len(SHARD_PARTS))
    return [f"results/dedup/part-{i}.jsonl.zst" for i in chosen]


rule shards:
    input:
        docs=dedup_parts_of,
        tokenizer="results/tokenizer/spm.model",
    output:
        train="results/shards/train/part-{part}.arrow",
        val="results/shards/val/part-{part}.arrow",
        test="results/shards/test/part-{part}.arrow",
        stats="results/shards/stats/part-{part}.json",
    params:
        shards=config["shards"],
        seed=config["seed"],
    threads: resource("shards", "threads", 1)
    resources:
        mem_mb=resource("shards", "mem_mb", 2000),
        runtime=resource("shards", "runtime", 30),
    log:
        "logs/shards/part-{part}.log",
    benchmark:
        "logs/benchmarks/shards/part-{part}.tsv"
    conda:
        "../../envs/data.yaml"
    script:
        "../../scripts/shards.py"


rule manifest:
    input:
        stats=expand("results/shards/stats/part-{part}.json", part=SHARD_PARTS),
        shards=expand("results/shards/{split}/part-{part}.arrow", split=SPLITS, part=SHARD_PARTS),
        tokenizer="results/tokenizer/spm.model",
    output:
        "results/shards/manifest.json",
    threads: resource("manifest", "threads", 1)
    resources:
        mem_mb=resource("manifest", "mem_mb", 1000),
        runtime=resource("manifest", "runtime", 10),
    log:
        "logs/manifest.log",
    benchmark:
        "logs/benchmarks/manifest.tsv"
    conda:
        "../../envs/data.yaml"
    script:
        "../../scripts/manifest.py"
