# The embedded default corpus and instruction set, gathered from the Python standard library.


rule sample_corpus:
    output:
        directory("results/sample/raw"),
    params:
        stdlib_max_bytes=config["corpus"]["stdlib_max_bytes"],
    log:
        "logs/sample_corpus.log",
    benchmark:
        "logs/benchmarks/sample_corpus.tsv"
    conda:
        "../../envs/data.yaml"
    script:
        "../../scripts/sample_corpus.py"


rule sample_instructions:
    output:
        "results/sample/sft.jsonl",
    params:
        max_pairs=config["sft"]["max_pairs"],
        max_response_chars=config["sft"]["max_response_chars"],
        seed=config["seed"],
    log:
        "logs/sample_instructions.log",
    benchmark:
        "logs/benchmarks/sample_instructions.tsv"
    conda:
        "../../envs/data.yaml"
    script:
        "../../scripts/sample_instructions.py"
