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
    threads: resource("sample", "threads", 1)
    resources:
        mem_mb=resource("sample", "mem_mb", 1000),
        runtime=resource("sample", "runtime", 30),
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
    threads: resource("dpo", "threads", 2)
    resources:
        mem_mb=resource("dpo", "mem_mb", 8000),
        runtime=resource("dpo", "runtime", 120),
        gpu=1 if config["dpo"].get("device") == "cuda" else resource("dpo", "gpu", 0),
    log:
        "logs/dpo.log",
    benchmark:
        "logs/benchmarks/dpo.tsv"
    conda:
        "../../envs/train.yaml"
    script:
        "../../scripts/dpo.py"
