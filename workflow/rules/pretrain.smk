# Pretraining; step checkpoints live beside final/ so a rerun after a crash resumes.
# With pretrain.nproc or pretrain.nodes > 1 the adapter starts nodes × nproc processes through
# torchrun (one torchrun per node under srun), and the job asks for exactly those nodes and GPUs.
# With pretrain.init_from it continues an imported Hugging Face model.

PRETRAIN_INIT = IMPORTED if INIT_STAGE == "pretrain" else []


# The folder the one init_from names (common.smk's INIT_STAGE), as a Helox model folder.
rule import_hf:
    input:
        lambda wildcards: config[wildcards.stage]["init_from"],
    output:
        directory("results/import/{stage}"),
    wildcard_constraints:
        stage="|".join(TRAINING_STAGES),
    log:
        "logs/import_hf_{stage}.log",
    benchmark:
        "logs/benchmarks/import_hf_{stage}.tsv"
    conda:
        "../../envs/train.yaml"
    script:
        "../../scripts/import_hf.py"


if IMPORTED:

    # The imported model's tokenizer files take the tokenizer stage's place (the folder
    # TOKENIZER): the shards, and so its evaluation, are tokenized with them.
    ruleorder: imported_tokenizer > tokenizer

    rule imported_tokenizer:
        input:
            folder=IMPORTED,
            documents=expand("results/dedup/part-{part}.jsonl.zst", part=PARTS),
        output:
            folder=directory(TOKENIZER),
            eval="results/tokenizer/eval.json",
        params:
            eval_docs=config["tokenizer"]["eval_docs"],
        log:
            "logs/tokenizer.log",
        conda:
            "../../envs/data.yaml"
        script:
            "../../scripts/imported_tokenizer.py"


rule pretrain:
    input:
        manifest="results/shards/manifest.json",
        tokenizer=TOKENIZER,
        init=PRETRAIN_INIT,
    output:
        directory("results/pretrain/final"),
    params:
        model=config["model"],
        pretrain=config["pretrain"],
        seed=config["seed"],
        weights=WEIGHTS,  # the corpus sources' weights: each one's share of the training rows
        checkpoints="results/pretrain/checkpoints",
    resources:
        **scheduler_request(config["pretrain"]),  # nodes, tasks, GPUs from pretrain.nodes/nproc
    log:
        "logs/pretrain.log",
    benchmark:
        "logs/benchmarks/pretrain.tsv"
    conda:
        "../../envs/train.yaml"
    script:
        "../../scripts/pretrain.py"
