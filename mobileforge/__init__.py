"""mobileforge: trained PyTorch models -> optimized, measured on-device artifacts.

The package holds the logic; ``scripts/`` only adapt Snakemake's ``snakemake`` object to it.
Importing this package must stay cheap (no torch): the workflow imports ``mobileforge.config``
at DAG-build time.
"""

__version__ = "0.1.0"
