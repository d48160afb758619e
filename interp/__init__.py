"""interp: interpretability and model validation for genomics foundation models.

Stages (each a module or sub-package, each a Snakemake rule):
genome -> lm -> embed -> probe / sae -> cohort -> audit -> rank -> report.
"""

__version__ = "0.1.0"
