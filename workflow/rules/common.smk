# Shared by every rule: config validation, the scatter width, resource lookup.

from helox.config import ConfigError, config_errors

_errors = config_errors(config)
if _errors:
    raise ConfigError("invalid configuration:\n  " + "\n  ".join(_errors))
validate(config, "../schemas/config.schema.yaml")

PARTS = list(range(config["clean"]["parts"]))
RAW_DIR = config["corpus"]["raw_dir"] or "results/sample/raw"
SFT_DATA = config["sft"]["data"] or "results/sample/sft.jsonl"


def resource(rule_name, key, default):
    """A rule's scheduler request from the config's `resources` section."""
    return config.get("resources", {}).get(rule_name, {}).get(key, default)
