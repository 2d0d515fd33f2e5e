"""The phone-side folder a benchmark works in: a persistent push cache and per-run folders.

``<remote_dir>/cache/<sha256>/<name>`` holds every runner and artifact ever pushed, by content:
a job pushes a file only when that exact content is not there yet (a 40 MiB runner is pushed
once per phone, not once per job). A push lands on ``<name>.partial`` and is renamed into place,
so a file under its final name is always complete, even after a cable pulled mid-push. Cache
entries unused for :data:`KEEP_DAYS` days are removed when something new is pushed.

``<remote_dir>/run-<id>/`` is the working folder of one runner process, removed by the same
command that ran it. A run cut short (a pulled cable) leaves its folder and perhaps its process
behind; :func:`prepare_command`, run while the job holds the phone's lock, kills runners still
executing from the cache and removes every ``run-*`` folder first.
"""

from __future__ import annotations

import posixpath
import re
import shlex

CACHE = "cache"
KEEP_DAYS = 14
MARK = "@@mobileforge-cache:"


def q(*words: object) -> str:
    """Quote every word for the device shell; the only way commands are built here."""
    return " ".join(shlex.quote(str(word)) for word in words)


def validate_remote_dir(remote_dir: str) -> str:
    norm = posixpath.normpath(remote_dir)
    if not remote_dir.startswith("/") or norm in ("/", "//") or ".." in remote_dir.split("/"):
        raise ValueError(f"remote_dir must be an absolute device path below /, got {remote_dir!r}")
    return norm


def cached_path(base: str, sha256: str, name: str) -> str:
    return posixpath.join(base, CACHE, sha256, name)


def process_pattern(path: str) -> str:
    """ERE for ``pkill -f`` matching processes whose command line holds ``path``.

    The first character is bracketed, so the pattern's own text (in the ``sh -c`` command line
    that runs pkill) does not match it and pkill spares the shell it runs in.
    """
    rest = re.sub(r"([.\[\]()*+?{}|^$\\])", r"\\\1", path[1:])
    return f"[{path[0]}]{rest}"


def prepare_command(base: str, wanted: list[str]) -> str:
    """Sweep stale runs, make the cache folder, report which ``wanted`` files it holds.

    Prints ``<MARK>have <i>`` for each index of ``wanted`` already present, then ``<MARK>ok``.
    Cache paths are written relative to ``base`` here: the command line of the shell running
    pkill must not contain the cache path pkill looks for, or the shell would kill itself.
    """
    cache = posixpath.join(base, CACHE)
    relative = [posixpath.relpath(path, base) for path in wanted]
    folders = sorted({posixpath.dirname(path) for path in relative})
    parts = [
        # A run folder left behind means a cut run, whose runner may still be executing.
        f"ls -d {q(base)}/run-* >/dev/null 2>&1 && pkill -f {q(process_pattern(cache + '/'))}",
        f"rm -rf {q(base)}/run-*",
        f"mkdir -p {q(cache)} && cd {q(base)} && touch -c {q(*folders)} 2>/dev/null",
        *(f"[ -f {q(path)} ] && echo {MARK}have{i}" for i, path in enumerate(relative)),
        f"echo {MARK}ok",
    ]
    return "; ".join(parts)


def present(output: str, count: int) -> set[int] | None:
    """Indexes reported present by :func:`prepare_command`; None if its output is garbled."""
    if f"{MARK}ok" not in output:
        return None
    return {i for i in range(count) if f"{MARK}have{i}" in output.split()}


def install_command(base: str, partial: str, final: str, mode: int) -> str:
    """Rename a finished push into place; evict cache entries unused for :data:`KEEP_DAYS`."""
    return (
        f"mv -f {q(partial)} {q(final)} && chmod {mode:o} {q(final)} && "
        f"{{ find {q(posixpath.join(base, CACHE))} -mindepth 1 -maxdepth 1 -type d "
        f"-mtime +{KEEP_DAYS} -exec rm -rf {{}} + 2>/dev/null; true; }}"
    )
