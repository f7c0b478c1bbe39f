# Preference tuning (DPO) of the SFT model, which stays frozen as the reference; with
# dpo.init_from, of an imported Hugging Face model (then pretraining and SFT do not run).

DPO_BASE = IMPORTED if INIT_STAGE == "dpo" else "results/sft/final"

DPO_DATA = config["dpo"]["data"] or "results/sample/dpo.jsonl"


rule sample_preferences:
    input:
        "results/sample/sft.jsonl",
    output:
        "results/sample/dpo.jsonl",
    params:
        max_pairs=config["dpo"]["max_pairs"],
        seed=config["seed"],
    log:
        "logs/sample_preferences.log",
    benchmark:
        "logs/benchmarks/sample_preferences.tsv"
    conda:
        "../../envs/data.yaml"
    script:
        "../../scripts/sample_preferences.py"


rule dpo:
    input:
        sft=DPO_BASE,
        data=DPO_DATA,
    output:
        directory("results/dpo/final"),
    params:
        dpo=config["dpo"],
        seed=config["seed"],
        checkpoints="results/dpo/checkpoints",
    resources:
        **scheduler_request(config["dpo"]),  # nodes, tasks, GPUs from dpo.nodes/nproc
    log:
        "logs/dpo.log",
    benchmark:
        "logs/benchmarks/dpo.tsv"
    conda:
        "../../envs/train.yaml"
    script:
        "../../scripts/dpo.py"
