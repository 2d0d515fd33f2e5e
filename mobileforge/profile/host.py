"""Profile an artifact on the host: start :mod:`mobileforge.profile.runner` in a process of its
own (pinned like the benchmark's) and read its raw profile. Torch-free."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from mobileforge.bench import tail
from mobileforge.bench.host.repeats import runner_env

#: How much of the runner's stderr an error carries.
STDERR_TAIL_CHARS = 4000


def profile_on_host(
    artifact: str | Path,
    fmt: str,
    input_shape: list[int],
    threads: int,
    runs: int,
    warmup: int,
    engine: str | None = None,
    timeout_s: float = 1800,
) -> dict[str, Any]:
    """The raw profile of ``artifact`` (see :func:`mobileforge.profile.runner.profile`)."""
    if runs < 1 or warmup < 0 or threads < 1:
        raise ValueError(f"need runs >= 1, warmup >= 0, threads >= 1 (got {runs}, {warmup}, "
                         f"{threads})")  # fmt: skip
    env = runner_env(threads)  # as the benchmark's runner processes have it
    with tempfile.TemporaryDirectory(prefix="mobileforge-profile-") as tmp:
        output = Path(tmp) / "raw.json"
        cmd = [
            sys.executable, "-m", "mobileforge.profile.runner",
            "--artifact", str(Path(artifact).resolve()), "--format", fmt,
            "--input-shape", ",".join(str(int(d)) for d in input_shape),
            "--threads", str(threads), "--runs", str(runs), "--warmup", str(warmup),
            "--output", str(output),
        ] + (["--engine", engine] if engine else [])  # fmt: skip
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
        if done.returncode != 0 or not output.exists():
            raise RuntimeError(
                f"profiling {artifact} failed (exit {done.returncode}); stderr tail:\n"
                f"{tail(done.stderr, STDERR_TAIL_CHARS)}"
            )
        return json.loads(output.read_text(encoding="utf-8"))
