# Shared by every rule: config validation, the scatter width, resource lookup.

from helox.config import ConfigError, config_errors

_errors = config_errors(config)
if _errors:
    raise ConfigError("invalid configuration:\n  " + "\n  ".join(_errors))
validate(config, "../schemas/config.schema.yaml")

from helox.data.clean import corpus_sources

PARTS = list(range(config["clean"]["parts"]))
# corpus.sources, or raw_dir (default: the gathered standard library) as one source.
SOURCES = corpus_sources(config["corpus"], "results/sample/raw")
MODEL_STAGES = ["pretrain", "sft", "dpo"]  # every training stage, each writing results/{stage}/final
RAW_DIRS = [source.path for source in SOURCES]
# What cleaning reads of each source: not its weight, so a weight edit leaves it alone.
CLEAN_SOURCES = [{"name": s.name, "path": s.path, "kind": s.kind} for s in SOURCES]
# Mixing by weight needs each source's token counts first; one source is taken as it is.
WEIGHTS = {source.name: source.weight for source in SOURCES} if len(SOURCES) > 1 else {}
SFT_DATA = config["sft"]["data"] or "results/sample/sft.jsonl"


def resource(rule_name, key, default):
    """A rule's scheduler request from the config's `resources` section."""
    return config.get("resources", {}).get(rule_name, {}).get(key, default)
