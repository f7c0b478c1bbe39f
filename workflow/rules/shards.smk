# Scatter: part {part} tokenized into Arrow files per split; gather: the manifest.

SPLITS = ["train", "val", "test"]


rule shards:
    input:
        docs="results/dedup/part-{part}.jsonl.zst",
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
    script:
        "../../scripts/shards.py"


rule manifest:
    input:
        stats=expand("results/shards/stats/part-{part}.json", part=PARTS),
        shards=expand("results/shards/{split}/part-{part}.arrow", split=SPLITS, part=PARTS),
        tokenizer="results/tokenizer/spm.model",
    output:
        "results/shards/manifest.json",
    log:
        "logs/manifest.log",
    script:
        "../../scripts/manifest.py"
