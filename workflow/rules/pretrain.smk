# Pretraining; step checkpoints live beside final/ so a rerun after a crash resumes.


rule pretrain:
    input:
        manifest="results/shards/manifest.json",
        tokenizer="results/tokenizer/spm.model",
    output:
        directory("results/pretrain/final"),
    params:
        model=config["model"],
        pretrain=config["pretrain"],
        seed=config["seed"],
        checkpoints="results/pretrain/checkpoints",
    threads: resource("pretrain", "threads", 2)
    resources:
        mem_mb=resource("pretrain", "mem_mb", 8000),
        runtime=resource("pretrain", "runtime", 240),
        gpu=resource("pretrain", "gpu", 0),
    log:
        "logs/pretrain.log",
    benchmark:
        "logs/benchmarks/pretrain.tsv"
    script:
        "../../scripts/pretrain.py"
