# Evaluation: one job per model folder → results/eval/{stage}.json, scored on the device the
# stage trained on; the built-in multiple-choice task is made once from the held-out test split.

NEXT_LINE_TASK = "results/eval/tasks/next_line.jsonl"


def eval_task_paths():
    """{name: JSONL path} of every multiple-choice task the config enables."""
    tasks = {"next_line": NEXT_LINE_TASK} if config["eval"]["next_line"]["enabled"] else {}
    return tasks | {task["name"]: task["path"] for task in config["eval"]["tasks"]}


def eval_task_inputs(wildcards):
    """The tasks as named inputs, `task_<name>`, apart from the rule's other inputs."""
    return {f"task_{name}": path for name, path in eval_task_paths().items()}


def eval_device(stage):
    """eval.device, or where it is auto the device the stage trained on."""
    device = config["eval"]["device"]
    return config[stage]["device"] if device == "auto" else device


def eval_params(device):
    """The eval section as every evaluate job reads it, on `device`: without eval.baselines,
    so that adding a baseline leaves the other models' scores as they are."""
    settings = {key: value for key, value in config["eval"].items() if key != "baselines"}
    return settings | {"device": device}


rule next_line_task:
    input:
        manifest="results/shards/manifest.json",
        tokenizer=TOKENIZER,
    output:
        NEXT_LINE_TASK,
    params:
        next_line=config["eval"]["next_line"],
        seed=config["seed"],
    log:
        "logs/eval/next_line_task.log",
    benchmark:
        "logs/benchmarks/eval/next_line_task.tsv"
    conda:
        "../../envs/train.yaml"
    script:
        "../../scripts/next_line_task.py"


rule evaluate:
    input:
        unpack(eval_task_inputs),
        model="results/{stage}/final",
        manifest="results/shards/manifest.json",
    output:
        "results/eval/{stage}.json",
    params:
        eval=lambda wildcards: eval_params(eval_device(wildcards.stage)),
        tasks=list(eval_task_paths()),
        seq_len=config["pretrain"]["seq_len"],
        seed=config["seed"],
    wildcard_constraints:
        stage="|".join(MODEL_STAGES),
    resources:
        gpu=lambda wildcards: 1 if eval_device(wildcards.stage) == "cuda" else 0,
    log:
        "logs/eval/{stage}.log",
    benchmark:
        "logs/benchmarks/eval/{stage}.tsv"
    conda:
        "../../envs/train.yaml"
    script:
        "../../scripts/evaluate.py"
