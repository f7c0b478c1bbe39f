# Pretraining; step checkpoints live beside final/ so a rerun after a crash resumes.
# With pretrain.nproc > 1 the adapter starts that many processes through torchrun.


def pretrain_gpus():
    """One GPU per training process when the device is CUDA; else as `resources` says."""
    if config["pretrain"].get("device") == "cuda":
        return config["pretrain"].get("nproc", 1)
    return resource("pretrain", "gpu", 0)


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
        gpu=pretrain_gpus(),
    log:
        "logs/pretrain.log",
    benchmark:
        "logs/benchmarks/pretrain.tsv"
    conda:
        "../../envs/train.yaml"
    script:
        "../../scripts/pretrain.py"
