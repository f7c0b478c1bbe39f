"""Snakemake adapter: clean one part of the raw folders."""

from helox.common.config_files import section_from_dict
from helox.common.logs import setup_logging
from helox.data.clean import clean_part
from helox.data.clean_config import CleanConfig
from helox.data.corpus import SourceConfig

setup_logging(snakemake.log[0])
config = section_from_dict(CleanConfig, snakemake.params.clean, "clean")
clean_part(
    [SourceConfig(**source) for source in snakemake.params.sources],
    part=int(snakemake.wildcards.part),
    parts=config.parts,
    config=config,
    output=snakemake.output.kept,
    rejected_output=snakemake.output.rejected,
    stats_output=snakemake.output.stats,
)
