"""Warm workers: jobs that cost their work, not their imports.

Every Snakemake ``script:`` job is a new Python process that imports torch (about 3 CPU-s on
the slower CPUs we run on) and, for the ``.pte`` jobs, the ExecuTorch compiler (about 10 CPU-s)
before it does any work. A warm worker is a process of the run, one per run directory, machine,
Python environment and set of preloaded modules, that has imported those once and run nothing.
A job hands its :class:`mobileforge.job.Job` to the worker over a unix socket in the run
directory; the worker forks a fresh child that runs the stage exactly as the job's own process
would, with the job's stdin/stdout/stderr, working directory and environment, and reports its
exit status back. Nothing passes from one job to the next: each child is a fresh fork.

- :mod:`mobileforge.warm.protocol`: the socket's place and the request/reply records.
- :mod:`mobileforge.warm.worker`: the worker (``python -m mobileforge.warm.worker``).
- :mod:`mobileforge.warm.client`: what a job's process does: find or start the worker, hand
  over the job, wait; or say why it cannot, and the job runs in its own process as before.
"""
