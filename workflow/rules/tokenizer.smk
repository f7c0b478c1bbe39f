# SentencePiece with byte fallback and the fixed special tokens, plus its evaluation.


rule tokenizer:
    input:
        expand("results/dedup/part-{part}.jsonl.zst", part=PARTS),
    output:
        model="results/tokenizer/spm.model",
        vocab="results/tokenizer/spm.vocab",
        eval="results/tokenizer/eval.json",
    params:
        tokenizer=config["tokenizer"],
    log:
        "logs/tokenizer.log",
    benchmark:
        "logs/benchmarks/tokenizer.tsv"
    conda:
        "../../envs/data.yaml"
    script:
        "../../scripts/tokenizer.py"
