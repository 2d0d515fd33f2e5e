"""How many of Snakemake's cores one real CPU stands for, so ``--cores`` cannot oversubscribe.

Snakemake trusts ``--cores``. Given more cores than the machine has CPUs (the quick start's
``--cores 8`` on a 2-CPU machine) it starts that many single-threaded torch jobs at once; each
gets a fraction of a CPU, and the longest chain (a ResNet-18's training, then its exports) is
stretched by the same factor while short jobs finish early and leave nothing to overlap it. So
every job claims ``runtime threads x cores_per_cpu`` cores: at most one single-threaded job per
CPU runs, and the job divides its claim back into runtime threads (:func:`runtime_threads`).

The share travels from the workflow (which knows ``--cores``) to its jobs through the
environment variable :data:`ENV`; a job started without it (another executor) claims 1:1.
Torch-free: the Snakefile imports this.
"""

from __future__ import annotations

import os

#: Environment variable carrying the share from the workflow to its local jobs.
ENV = "MOBILEFORGE_CORES_PER_CPU"


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, which containers and taskset narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - no sched_getaffinity (macOS)
        return max(1, os.cpu_count() or 1)


def cores_per_cpu(cores: int, cpus: int) -> int:
    """Snakemake cores per real CPU: 1 unless ``cores`` exceeds ``cpus`` (8 on 2 -> 4).

    Rounded down, so at least as many jobs as CPUs can still run (8 cores on 3 CPUs -> 2:
    up to 4 single-threaded jobs, mildly oversubscribed rather than a CPU left idle).
    """
    if cores < 1 or cpus < 1:
        raise ValueError(f"cores and cpus must be positive, got cores={cores}, cpus={cpus}")
    return max(1, cores // cpus)


def share_from_env() -> int:
    """The workflow's :func:`cores_per_cpu`, as passed to this job (1 if not passed)."""
    value = os.environ.get(ENV, "1")
    try:
        share = int(value)
    except ValueError:
        raise ValueError(f"{ENV}={value!r} is not a positive integer") from None
    if share < 1:
        raise ValueError(f"{ENV}={value!r} is not a positive integer")
    return share


def runtime_threads(claimed_cores: int, share: int) -> int:
    """Runtime threads for a job that claimed ``claimed_cores`` Snakemake cores (at least 1)."""
    return max(1, claimed_cores // share)
