# Supervised fine-tuning of the pretrained model, or with sft.init_from of an imported
# Hugging Face model (then pretraining does not run), on instruction pairs.

SFT_BASE = IMPORTED if INIT_STAGE == "sft" else "results/pretrain/final"


rule sft:
    input:
        pretrained=SFT_BASE,
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
