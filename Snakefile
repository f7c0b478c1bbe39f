# Helox: raw text → clean → dedup → tokenizer → shards → pretrain → SFT → evaluation (with
# eval.baselines beside the stages), then the report's parts.
# Snakemake decides what is outdated; every byte of real work happens in `helox`.

from snakemake.utils import min_version

min_version("9.0")


configfile: f"{workflow.basedir}/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/clean.smk"
include: "workflow/rules/dedup.smk"
include: "workflow/rules/tokenizer.smk"
include: "workflow/rules/shards.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/sft.smk"
include: "workflow/rules/dpo.smk"
include: "workflow/rules/eval.smk"
include: "workflow/rules/baselines.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        expand("results/{stage}/final", stage=MODEL_STAGES),
        rules.report_data.output,
        expand(rules.report_training.output, stage=MODEL_STAGES),
        rules.report_eval.output,
        BASELINE_RESULTS,
        # What pretraining drew, and answers before and after SFT, where those stages run.
        rules.report_mixture.output if "pretrain" in MODEL_STAGES else [],
        rules.report_samples.output if "sft" in MODEL_STAGES else [],
