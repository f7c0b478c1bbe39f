# Gather: exact duplicates removed across every cleaned part.


rule dedup:
    input:
        kept=expand("results/clean/part-{part}.jsonl.zst", part=PARTS),
        stats=expand("results/clean/part-{part}.stats.json", part=PARTS),
    output:
        kept=expand("results/dedup/part-{part}.jsonl.zst", part=PARTS),
        stats="results/dedup/stats.json",
    params:
        dedup=config["dedup"],
    threads: resource("dedup", "threads", 1)
    resources:
        mem_mb=resource("dedup", "mem_mb", 4000),
        runtime=resource("dedup", "runtime", 30),
    log:
        "logs/dedup.log",
    benchmark:
        "logs/benchmarks/dedup.tsv"
    script:
        "../../scripts/dedup.py"
