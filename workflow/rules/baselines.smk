# eval.baselines: each imported Hugging Face folder is scored like the stages, with the same
# tasks and settings, on the pipeline's own val and test documents tokenized with its own
# tokenizer → results/eval/baselines/{name}.json, more columns of the eval card.

BASELINES = {baseline["name"]: baseline["path"] for baseline in config["eval"]["baselines"]}
BASELINE_RESULTS = expand("results/eval/baselines/{name}.json", name=list(BASELINES))
BASELINE_NAME = "[A-Za-z0-9][A-Za-z0-9_.-]*"  # one path component (the schema's pattern)
# eval.device, or where it is auto the device the first training stage that runs uses.
BASELINE_DEVICE = eval_device(MODEL_STAGES[0])


rule import_baseline:
    input:
        lambda wildcards: BASELINES[wildcards.name],
    output:
        directory("results/import/baseline/{name}"),
    wildcard_constraints:
        name=BASELINE_NAME,
    log:
        "logs/import_hf_baseline/{name}.log",
    benchmark:
        "logs/benchmarks/import_hf_baseline/{name}.tsv"
    conda:
        "../../envs/train.yaml"
    script:
        "../../scripts/import_hf.py"


# The documents the shards jobs put in val and test (same seed and shards section), in the
# baseline's own tokens; no train split.
rule held_out_shards:
    input:
        docs=expand("results/dedup/part-{part}.jsonl.zst", part=PARTS),
        tokenizer="results/import/baseline/{name}",
    output:
        val="results/eval/baselines/{name}/shards/val.arrow",
        test="results/eval/baselines/{name}/shards/test.arrow",
        manifest="results/eval/baselines/{name}/shards/manifest.json",
    wildcard_constraints:
        name=BASELINE_NAME,
    params:
        shards=config["shards"],
        seed=config["seed"],
    log:
        "logs/eval/baselines/{name}/shards.log",
    benchmark:
        "logs/benchmarks/eval/baselines/{name}/shards.tsv"
    conda:
        "../../envs/data.yaml"
    script:
        "../../scripts/held_out_shards.py"


# With the stages' settings, at pretraining's seq_len, as they are scored.
rule evaluate_baseline:
    input:
        unpack(eval_task_inputs),
        model="results/import/baseline/{name}",
        manifest="results/eval/baselines/{name}/shards/manifest.json",
    output:
        "results/eval/baselines/{name}.json",
    wildcard_constraints:
        name=BASELINE_NAME,
    params:
        eval=eval_params(BASELINE_DEVICE),
        tasks=list(eval_task_paths()),
        seq_len=config["pretrain"]["seq_len"],
        seed=config["seed"],
    resources:
        gpu=1 if BASELINE_DEVICE == "cuda" else 0,
    log:
        "logs/eval/baselines/{name}.log",
    benchmark:
        "logs/benchmarks/eval/baselines/{name}.tsv"
    conda:
        "../../envs/train.yaml"
    script:
        "../../scripts/evaluate.py"
