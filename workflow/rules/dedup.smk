# Staged dedup, no job holding the corpus (helox/data/dedup.py): scatter, each part's index
# (text hashes, MinHash signatures, lanes of keys sorted per LSH band); scatter, bucket jobs
# finding the duplicate pairs in their range of keys; gather, one join of the pairs into
# clusters; scatter, each part without its removed documents.

import dataclasses

from helox.common.config_files import section_from_dict
from helox.data.dedup import DedupConfig
from helox.data.dedup_index import IndexSettings

BUCKETS = list(range(config["dedup"]["bucket_jobs"]))
# What a part's index depends on: an edit to the threshold, exact or bucket_jobs leaves it.
INDEX_SETTINGS = dataclasses.asdict(
    IndexSettings.of(section_from_dict(DedupConfig, config["dedup"], "dedup"))
)


rule dedup_signatures:
    input:
        "results/clean/part-{part}.jsonl.zst",
    output:
        directory("results/dedup/signatures/part-{part}"),
    params:
        index=INDEX_SETTINGS,
    log:
        "logs/dedup/signatures/part-{part}.log",
    benchmark:
        "logs/benchmarks/dedup/signatures/part-{part}.tsv"
    conda:
        "../../envs/data.yaml"
    script:
        "../../scripts/dedup_signatures.py"


rule dedup_buckets:
    input:
        expand("results/dedup/signatures/part-{part}", part=PARTS),
    output:
        "results/dedup/pairs/bucket-{bucket}.npz",
    params:
        dedup=config["dedup"],
    log:
        "logs/dedup/pairs/bucket-{bucket}.log",
    benchmark:
        "logs/benchmarks/dedup/pairs/bucket-{bucket}.tsv"
    conda:
        "../../envs/data.yaml"
    script:
        "../../scripts/dedup_buckets.py"


rule dedup_clusters:
    input:
        signatures=expand("results/dedup/signatures/part-{part}", part=PARTS),
        pairs=expand("results/dedup/pairs/bucket-{bucket}.npz", bucket=BUCKETS),
        clean_stats=expand("results/clean/part-{part}.stats.json", part=PARTS),
    output:
        removed=expand("results/dedup/removed/part-{part}.npz", part=PARTS),
        stats="results/dedup/stats.json",
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
        removed="results/dedup/removed/part-{part}.npz",
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
