# Helox: raw text → clean → dedup → tokenizer → shards → pretrain → SFT.
# Snakemake decides what is outdated; every byte of real work happens in `helox`.

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: f"{workflow.basedir}/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/clean.smk"
include: "workflow/rules/dedup.smk"
include: "workflow/rules/tokenizer.smk"
include: "workflow/rules/shards.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/sft.smk"


rule all:
    default_target: True
    input:
        "results/sft/final",
