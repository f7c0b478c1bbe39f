# Scatter: shards job {part} tokenizes dedup parts {part}, {part} + shards.parts, ... once,
# into one train shard per corpus source and a val and a test shard; gather: the manifest.
# No weight is read here: training mixes the sources' train shards by weight, so a weight
# edit reruns training only.

from helox.tokens.shards import SPLITS, inputs_of_part

SHARD_PARTS = list(range(config["shards"]["parts"]))
SOURCE_NAMES = [source.name for source in SOURCES]


def dedup_parts_of(wildcards):
    """The deduplicated parts that one shards job takes."""
    chosen = inputs_of_part(PARTS, int(wildcards.part), len(SHARD_PARTS))
    return [f"results/dedup/part-{i}.jsonl.zst" for i in chosen]


rule shards:
    input:
        docs=dedup_parts_of,
        tokenizer=TOKENIZER,
    output:
        train=expand("results/shards/train/{source}/part-{{part}}.arrow", source=SOURCE_NAMES),
        val="results/shards/val/part-{part}.arrow",
        test="results/shards/test/part-{part}.arrow",
        stats="results/shards/stats/part-{part}.json",
    params:
        shards=config["shards"],
        seed=config["seed"],
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
        train=expand(
            "results/shards/train/{source}/part-{part}.arrow", part=SHARD_PARTS, source=SOURCE_NAMES
        ),
        val=expand("results/shards/val/part-{part}.arrow", part=SHARD_PARTS),
        test=expand("results/shards/test/part-{part}.arrow", part=SHARD_PARTS),
        tokenizer=TOKENIZER,
    output:
        "results/shards/manifest.json",
    log:
        "logs/manifest.log",
    benchmark:
        "logs/benchmarks/manifest.tsv"
    conda:
        "../../envs/data.yaml"
    script:
        "../../scripts/manifest.py"
