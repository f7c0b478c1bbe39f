# Scatter: part {part} of the raw folder, read, normalised and filtered; every removed
# document goes to rejected/ with its reason, the counts per filter and file to the stats.


rule clean:
    input:
        RAW_DIR,
    output:
        kept="results/clean/part-{part}.jsonl.zst",
        rejected="results/clean/rejected/part-{part}.jsonl.zst",
        stats="results/clean/part-{part}.stats.json",
    params:
        clean=config["clean"],
    threads: resource("clean", "threads", 1)
    resources:
        mem_mb=resource("clean", "mem_mb", 2000),
        runtime=resource("clean", "runtime", 30),
    log:
        "logs/clean/part-{part}.log",
    benchmark:
        "logs/benchmarks/clean/part-{part}.tsv"
    conda:
        "../../envs/data.yaml"
    script:
        "../../scripts/clean.py"
