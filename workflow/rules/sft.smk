# Supervised fine-tuning of the pretrained model, or with sft.init_from of an imported
# Hugging Face model (then nothing upstream of SFT runs but the import), on instruction pairs.


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
    resources:
        **scheduler_request(config["sft"]),  # nodes, tasks, GPUs from sft.nodes/nproc
    log:
        "logs/sft.log",
    benchmark:
        "logs/benchmarks/sft.tsv"
    conda:
        "../../envs/train.yaml"
    script:
        "../../scripts/sft.py"
