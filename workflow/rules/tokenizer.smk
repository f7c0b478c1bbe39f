# SentencePiece with byte fallback and the fixed special tokens, plus its evaluation. Its
# artifact is a tokenizer folder (TOKENIZER, holding tokenizer.model), as a model folder
# carries its tokenizer: an imported model's stands in for it (rule imported_tokenizer).


rule tokenizer:
    input:
        expand("results/dedup/part-{part}.jsonl.zst", part=PARTS),
    output:
        folder=directory(TOKENIZER),
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
