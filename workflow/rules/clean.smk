# Scatter: part {part} of the raw folders (corpus.sources or raw_dir), read, normalised and
# filtered by kind of text; every removed document goes to rejected/ with its reason, the
# counts per filter, kind, source and file to the stats.


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
    log:
        "logs/clean/part-{part}.log",
    benchmark:
        "logs/benchmarks/clean/part-{part}.tsv"
    conda:
        "../../envs/data.yaml"
    script:
        "../../scripts/clean.py"
