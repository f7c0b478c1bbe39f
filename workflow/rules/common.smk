# Shared by every rule: config validation and completion, the scatter width, the sources.

from helox.common.schema import coerce_values
from helox.pipeline.config import resolve_config, validate_config

# `--config 'pretrain={total_steps: 5}'` gives nested values as text: read them as numbers;
# a section whose keys are all commented out is empty, not null.
coerce_values(config)
validate_config(config)
# Every key the config files leave out takes its section's default (`helox config` prints them
# all); sft: and dpo: take pretrain:'s training keys first.
config.update(resolve_config(config))

from helox.data.corpus import corpus_sources
from helox.train.launch import scheduler_request

PARTS = list(range(config["clean"]["parts"]))
# corpus.sources, or raw_dir (default: the gathered standard library) as one source.
SOURCES = corpus_sources(config["corpus"], "results/sample/raw")
TRAINING_STAGES = ["pretrain", "sft", "dpo"]  # in order, each writing results/{stage}/final
# The stage that starts from an imported Hugging Face folder (its init_from; one at most), else
# None. The stages before it do not run, and the folder's tokenizer is the pipeline's.
INIT_STAGE = next((stage for stage in TRAINING_STAGES if config[stage]["init_from"]), None)
IMPORTED = f"results/import/{INIT_STAGE}" if INIT_STAGE else None
MODEL_STAGES = TRAINING_STAGES[TRAINING_STAGES.index(INIT_STAGE) :] if INIT_STAGE else TRAINING_STAGES
RAW_DIRS = [source.path for source in SOURCES]
# What cleaning reads of each source: not its weight, so a weight edit leaves it alone.
CLEAN_SOURCES = [
    {"name": s.name, "path": s.path, "kind": s.kind, "text_field": s.text_field} for s in SOURCES
]
# Training draws each source's rows by its weight, so only the training rules read the weights
# (a lone source's weight changes nothing).
WEIGHTS = {source.name: source.weight for source in SOURCES} if len(SOURCES) > 1 else {}
SFT_DATA = config["sft"]["data"] or "results/sample/sft.jsonl"
# The tokenizer every stage from the shards on reads: a folder with a model folder's tokenizer
# files (helox.tokens.folder_files.TOKENIZER_FILES), from the tokenizer stage or an import.
TOKENIZER = "results/tokenizer/files"

