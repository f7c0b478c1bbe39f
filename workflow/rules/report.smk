# The report's tables, figures and samples, made from what each stage wrote. The `all`
# target builds them; `snakemake --report results/report.html` then gathers them.


def data_report(name, caption, subcategory):
    """A data-stage output of the report, under the Data category."""
    return report(
        f"results/report/data/{name}",
        caption=f"../report/{caption}.rst",
        category="Data",
        subcategory=subcategory,
    )


rule report_data:
    input:
        clean_stats=expand("results/clean/part-{part}.stats.json", part=PARTS),
        dedup_stats="results/dedup/stats.json",
        tokenizer_eval="results/tokenizer/eval.json",
        tokenizer=TOKENIZER,
        manifest="results/shards/manifest.json",
    output:
        filters=data_report("filters.html", "filters", "Cleaning and deduplication"),
        sources=data_report("sources.html", "sources", "Cleaning and deduplication"),
        clusters=data_report("duplicate_clusters.png", "clusters", "Cleaning and deduplication"),
        tokenizer=data_report("tokenizer.html", "tokenizer", "Tokenizer and shards"),
        splits=data_report("tokens_per_split.png", "splits", "Tokenizer and shards"),
    log:
        "logs/report/data.log",
    benchmark:
        "logs/benchmarks/report/data.tsv"
    conda:
        "../../envs/train.yaml"
    script:
        "../../scripts/report_data.py"


# What pretraining drew from each source: after pretrain, as the weights only reach training.
rule report_mixture:
    input:
        clean_stats=expand("results/clean/part-{part}.stats.json", part=PARTS),
        dedup_stats="results/dedup/stats.json",
        manifest="results/shards/manifest.json",
        pretrained="results/pretrain/final",
    output:
        mixture=data_report("mixture.html", "mixture", "Mixture of sources"),
        mixture_figure=data_report("mixture.png", "mixture", "Mixture of sources"),
    log:
        "logs/report/mixture.log",
    benchmark:
        "logs/benchmarks/report/mixture.tsv"
    conda:
        "../../envs/train.yaml"
    script:
        "../../scripts/report_mixture.py"


def training_figure(name):
    """A figure of training stage {stage}, under the Training category."""
    return report(
        f"results/report/{{stage}}/{name}.png",
        caption=f"../report/{name}.rst",
        category="Training",
        subcategory="{stage}",
    )


rule report_training:
    input:
        "results/{stage}/final",
    output:
        loss=training_figure("loss"),
        bpb=training_figure("bpb"),
        lr=training_figure("lr"),
        throughput=training_figure("throughput"),
    wildcard_constraints:
        stage="|".join(MODEL_STAGES),
    log:
        "logs/report/{stage}.log",
    benchmark:
        "logs/benchmarks/report/{stage}.tsv"
    conda:
        "../../envs/train.yaml"
    script:
        "../../scripts/report_training.py"


rule report_samples:
    input:
        pretrained=SFT_BASE,
        sft="results/sft/final",
    output:
        report("results/report/samples.html", caption="../report/samples.rst", category="Samples"),
    params:
        seed=config["seed"],
    log:
        "logs/report/samples.log",
    benchmark:
        "logs/benchmarks/report/samples.tsv"
    conda:
        "../../envs/train.yaml"
    script:
        "../../scripts/report_samples.py"


rule report_eval:
    input:
        expand("results/eval/{stage}.json", stage=MODEL_STAGES),
        BASELINE_RESULTS,
    output:
        report("results/report/eval/card.html", caption="../report/eval.rst", category="Evaluation"),
    log:
        "logs/report/eval.log",
    benchmark:
        "logs/benchmarks/report/eval.tsv"
    conda:
        "../../envs/train.yaml"
    script:
        "../../scripts/report_eval.py"
