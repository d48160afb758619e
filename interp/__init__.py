"""interp: interpretability and model validation for genomics foundation models.

Stages (each a module or sub-package, each a Snakemake rule):
genome -> lm -> embed -> probe / sae -> cohort -> audit -> rank -> report.
"""

__version__ = "0.1.0"

import warnings as _warnings

# Lightning warns on every Trainer when `srun` is on PATH (any SLURM client machine): each probe fit would
# print it, burying the logs. Jobs here are single-device; a SLURM run is configured by the profile.
_warnings.filterwarnings("ignore", message=r"The `srun` command is available on your system")
