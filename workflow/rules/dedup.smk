# Scatter: a fixed-size record per document of each cleaned part (text hash, MinHash signature);
# gather: exact and near-duplicate clusters across all parts; scatter: each part without them.


def minhash_params(dedup):
    """The slice of `dedup` that signatures depend on: an edit to bands, rows, threshold or
    exact reruns the clustering only. num_perm 0 signs nothing (near-dedup switched off)."""
    near = dedup["near"]
    return {
        "lowercase": dedup["lowercase"],
        "ngram": near["ngram"],
        "num_perm": near["num_perm"] if near["enabled"] else 0,
        "seed": near["seed"],
    }


rule dedup_signatures:
    input:
        "results/clean/part-{part}.jsonl.zst",
    output:
        "results/dedup/signatures/part-{part}.npz",
    params:
        minhash=minhash_params(config["dedup"]),
    log:
        "logs/dedup/signatures/part-{part}.log",
    benchmark:
        "logs/benchmarks/dedup/signatures/part-{part}.tsv"
    conda:
        "../../envs/data.yaml"
    script:
        "../../scripts/dedup_signatures.py"


rule dedup_clusters:
    input:
        signatures=expand("results/dedup/signatures/part-{part}.npz", part=PARTS),
        clean_stats=expand("results/clean/part-{part}.stats.json", part=PARTS),
    output:
        duplicates="results/dedup/duplicates.npz",
        stats="results/dedup/stats.json",
    params:
        dedup=config["dedup"],
    log:
        "logs/dedup/clusters.log",
    benchmark:
        "logs/benchmarks/dedup/clusters.tsv"
    conda:
        "../../envs/data.yaml"
    script:
        "../../scripts/dedup_clusters.py"


rule dedup:
    input:
        kept="results/clean/part-{part}.jsonl.zst",
        duplicates="results/dedup/duplicates.npz",
    output:
        "results/dedup/part-{part}.jsonl.zst",
    log:
        "logs/dedup/part-{part}.log",
    benchmark:
        "logs/benchmarks/dedup/part-{part}.tsv"
    conda:
        "../../envs/data.yaml"
    script:
        "../../scripts/dedup.py"
