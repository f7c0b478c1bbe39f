# Scatter: shards job {part} tokenizes dedup parts {part}, {part} + shards.parts, ...
# into one Arrow file per split; gather: the manifest. With several corpus.sources, the
# tokens of each source per split are counted first, and the train split mixed by weight:
# the counts do not depend on the weights, so a weight edit reruns the shards onward only.

from helox.tokens.shards import SPLITS, inputs_of_part

SHARD_PARTS = list(range(config["shards"]["parts"]))


def dedup_parts_of(wildcards):
    """The deduplicated parts that one shards job takes."""
    chosen = inputs_of_part(PARTS, int(wildcards.part), len(SHARD_PARTS))
    return [f"results/dedup/part-{i}.jsonl.zst" for i in chosen]


def split_params(shards, seed):
    """What puts a document in a split: the ratios and the seed."""
    ratios = {key: shards[key] for key in ("train_split", "val_split", "test_split")}
    return {**ratios, "seed": seed}


rule shard_counts:
    input:
        docs=dedup_parts_of,
        tokenizer=TOKENIZER,
    output:
        "results/shards/counts/part-{part}.json",
    params:
        splits=split_params(config["shards"], config["seed"]),
    log:
        "logs/shards/counts/part-{part}.log",
    benchmark:
        "logs/benchmarks/shards/counts/part-{part}.tsv"
    conda:
        "../../envs/data.yaml"
    script:
        "../../scripts/shard_counts.py"


rule shards:
    input:
        docs=dedup_parts_of,
        tokenizer=TOKENIZER,
        counts=expand("results/shards/counts/part-{part}.json", part=SHARD_PARTS) if WEIGHTS else [],
    output:
        train="results/shards/train/part-{part}.arrow",
        val="results/shards/val/part-{part}.arrow",
        test="results/shards/test/part-{part}.arrow",
        stats="results/shards/stats/part-{part}.json",
    params:
        shards=config["shards"],
        seed=config["seed"],
        weights=WEIGHTS,
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
        tokenizer=TOKENIZER,
    output:
        "results/shards/manifest.json",
    params:
        weights=WEIGHTS,
    log:
        "logs/manifest.log",
    benchmark:
        "logs/benchmarks/manifest.tsv"
    conda:
        "../../envs/data.yaml"
    script:
        "../../scripts/manifest.py"
