# Preference tuning (DPO) of the SFT model, which stays frozen as the reference.

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
        sft="results/sft/final",
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
