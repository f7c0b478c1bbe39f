# Supervised fine-tuning of the pretrained model, or with sft.init_from of an imported
# Hugging Face Llama (then nothing upstream of SFT runs but the import), on instruction pairs.


rule sft:
    input:
        pretrained=(
            "results/import/sft" if config["sft"].get("init_from") else "results/pretrain/final"
        ),
        data=SFT_DATA,
    output:
        directory("results/sft/final"),
    params:
        sft=config["sft"],
        seed=config["seed"],
        checkpoints="results/sft/checkpoints",
    threads: resource("sft", "threads", 2)
    resources:
        mem_mb=resource("sft", "mem_mb", 8000),
        runtime=resource("sft", "runtime", 120),
        gpu=1 if config["sft"].get("device") == "cuda" else resource("sft", "gpu", 0),
    log:
        "logs/sft.log",
    benchmark:
        "logs/benchmarks/sft.tsv"
    conda:
        "../../envs/train.yaml"
    script:
        "../../scripts/sft.py"
