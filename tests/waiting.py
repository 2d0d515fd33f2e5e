"""Waiting for what another process does (a job starting, a lock taken, a worker gone).

The bound only turns a hang into a failure that names what never happened; no test asserts how
long anything took.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(condition: Callable[[], object], what: str, bound_s: float = 120.0) -> None:
    """Return once ``condition()`` is true; ``TimeoutError`` naming ``what`` after ``bound_s``."""
    deadline = time.monotonic() + bound_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"still waiting for {what} after {bound_s:g} s: a hang")
        time.sleep(0.05)
