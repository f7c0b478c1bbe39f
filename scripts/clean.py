"""Snakemake adapter: clean one part of the raw folders."""

from helox.config import CleanConfig, SourceConfig, section_from_dict
from helox.data.clean import clean_part
from helox.logs import setup_logging

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
