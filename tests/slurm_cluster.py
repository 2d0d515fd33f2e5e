"""A real single-node SLURM cluster on loopback, started and stopped by the tests themselves.

Debian's slurm-wlm 22.05 daemons (munged, slurmctld, slurmd) run from a private directory
with their own key, sockets, free ports, spool and logs. One thing lives outside it: the
config is also linked at SLURM's default path, /etc/slurm/slurm.conf, for as long as the
cluster runs. The SLURM executor's job step (snakemake-executor-plugin-slurm-jobstep 0.6.1)
drops every ``SLURM_*`` variable, ``SLURM_CONF`` included, before its inner ``srun``, which
then finds no config; real clusters keep theirs at the default path. A machine that already
has a slurm.conf there is a real SLURM host: :meth:`SlurmCluster.start` refuses to touch it.
``.ci/run`` installs the packages; without them :func:`missing_binaries` names what is
absent and the tests skip.

Job status: without slurmdbd there is no ``sacct``, so the SLURM executor plugin is told to
poll ``squeue --states=all``, which lists finished jobs until ``MinJobAge`` passes. The plugin
needs MinJobAge >= 3x its first status check delay; it is set far above (:data:`MIN_JOB_AGE`).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

#: Where SLURM's clients look for their config when SLURM_CONF is not set.
DEFAULT_CONF = Path("/etc/slurm/slurm.conf")
BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol")
#: Seconds a finished job stays visible to squeue (the plugin's status source here).
MIN_JOB_AGE = 600
CLUSTER_NAME = "mobileforge"


def missing_binaries() -> list[str]:
    """SLURM/munge programs that are not on PATH (``.ci/run`` installs them)."""
    return [name for name in BINARIES if shutil.which(name) is None]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _memory_mb() -> int:
    with open("/proc/meminfo") as handle:
        total_kb = int(handle.readline().split()[1])
    return total_kb // 1024


class SlurmCluster:
    """munged + slurmctld + slurmd for one node (this machine) under ``root``.

    ``env`` is what a client (sbatch, squeue, Snakemake's SLURM executor) needs to reach the
    cluster. ``cpus`` defaults to the CPUs this process may use; memory is counted as a
    consumable resource, as on real clusters, so ``mem_mb`` requests are checked.
    """

    def __init__(self, root: Path, cpus: int | None = None) -> None:
        self.root = root
        self.cpus = cpus or len(os.sched_getaffinity(0))
        self.node = socket.gethostname().split(".")[0]
        self.processes: list[subprocess.Popen] = []
        self.linked = False
        self.conf = root / "etc" / "slurm.conf"
        self.munge_socket = root / "munge" / "munge.socket"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    def start(self, timeout_s: float = 90) -> float:
        """Start the daemons and wait until the node accepts jobs; returns seconds taken."""
        started = time.perf_counter()
        for part in ("etc", "munge", "state", "spool", "log"):
            (self.root / part).mkdir(parents=True, exist_ok=True)
            (self.root / part).chmod(0o700)
        self._start_munge()
        self._write_conf()
        self._link_default_conf()
        self._spawn(["slurmctld", "-D", "-i", "-f", str(self.conf)], "slurmctld")
        self._spawn(["slurmd", "-D", "-N", self.node, "-f", str(self.conf)], "slurmd")
        self._wait_for_idle_node(started + timeout_s)
        return time.perf_counter() - started

    def _start_munge(self) -> None:
        key = self.root / "munge" / "munge.key"
        if not key.exists():
            key.write_bytes(os.urandom(1024))
            key.chmod(0o400)
        self._spawn(
            [
                "munged",
                "--foreground",
                "--force",
                f"--socket={self.munge_socket}",
                f"--key-file={key}",
                f"--pid-file={self.root / 'munge' / 'munged.pid'}",
                f"--seed-file={self.root / 'munge' / 'munged.seed'}",
                f"--log-file={self.root / 'log' / 'munged.log'}",
            ],
            "munged",
        )
        deadline = time.monotonic() + 15
        while not self.munge_socket.exists():
            self._check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"munged did not create {self.munge_socket} in 15 s")
            time.sleep(0.05)

    def _write_conf(self) -> None:
        log = self.root / "log"
        memory = max(1000, _memory_mb() - 2000)  # leave the OS some room, as real nodes do
        lines = {
            "ClusterName": CLUSTER_NAME,
            "SlurmctldHost": f"{self.node}(127.0.0.1)",
            "SlurmctldPort": _free_port(),
            "SlurmdPort": _free_port(),
            "SlurmUser": "root",
            "SlurmdUser": "root",
            "AuthType": "auth/munge",
            "AuthInfo": f"socket={self.munge_socket}",
            "CredType": "cred/munge",
            "StateSaveLocation": self.root / "state",
            "SlurmdSpoolDir": self.root / "spool",
            "SlurmctldPidFile": self.root / "slurmctld.pid",
            "SlurmdPidFile": self.root / "slurmd.pid",
            "SlurmctldLogFile": log / "slurmctld.log",
            "SlurmdLogFile": log / "slurmd.log",
            # No cgroups in a container: track processes by their parent, bind no tasks.
            "ProctrackType": "proctrack/linuxproc",
            "TaskPlugin": "task/none",
            "JobAcctGatherType": "jobacct_gather/none",
            "AccountingStorageType": "accounting_storage/none",
            "JobCompType": "jobcomp/none",
            "MpiDefault": "none",
            "SelectType": "select/cons_tres",
            "SelectTypeParameters": "CR_Core_Memory",
            "SchedulerType": "sched/backfill",
            "ReturnToService": 2,
            "MinJobAge": MIN_JOB_AGE,
            "KillWait": 5,
            "InactiveLimit": 0,
            "SlurmctldTimeout": 30,
            "SlurmdTimeout": 30,
        }
        text = "".join(f"{key}={value}\n" for key, value in lines.items())
        text += (
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} "
            f"RealMemory={memory} State=UNKNOWN\n"
            f"PartitionName=main Nodes={self.node} Default=YES MaxTime=INFINITE State=UP\n"
        )
        self.conf.write_text(text)

    def _link_default_conf(self) -> None:
        if DEFAULT_CONF.is_symlink() and not DEFAULT_CONF.exists():
            DEFAULT_CONF.unlink()  # left by a cluster that was killed before it could stop
        if DEFAULT_CONF.exists() or DEFAULT_CONF.is_symlink():
            raise RuntimeError(
                f"{DEFAULT_CONF} exists: this machine is configured for another SLURM cluster"
            )
        DEFAULT_CONF.parent.mkdir(parents=True, exist_ok=True)
        DEFAULT_CONF.symlink_to(self.conf)
        self.linked = True

    def _spawn(self, command: list[str], name: str) -> None:
        output = open(self.root / "log" / f"{name}.out", "w")  # noqa: SIM115 - daemon's life
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, env=self.env,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        process.name = name  # type: ignore[attr-defined]
        self.processes.append(process)

    def _check_alive(self) -> None:
        for process in self.processes:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{process.name} exited with {process.returncode}: "  # type: ignore[attr-defined]
                    f"{self.tail(process.name)}"  # type: ignore[attr-defined]
                )

    def tail(self, name: str, chars: int = 3000) -> str:
        """The end of a daemon's own log (``slurmctld``, ``slurmd``, ``munged``)."""
        texts = []
        for path in (self.root / "log" / f"{name}.out", self.root / "log" / f"{name}.log"):
            if path.exists():
                texts.append(path.read_text(errors="replace")[-chars:])
        return "\n".join(texts)

    def _wait_for_idle_node(self, deadline: float) -> None:
        state = ""
        while time.perf_counter() < deadline:
            self._check_alive()
            result = subprocess.run(
                ["sinfo", "--noheader", "--nodes", self.node, "--format", "%T"],
                env=self.env, capture_output=True, text=True, check=False,
            )  # fmt: skip
            state = result.stdout.strip()
            if result.returncode == 0 and state == "idle":
                return
            time.sleep(0.5)
        raise RuntimeError(
            f"SLURM node {self.node} not idle in time (state {state!r}):\n"
            f"{self.tail('slurmctld')}\n{self.tail('slurmd')}"
        )

    def stop(self) -> None:
        """Stop every daemon this cluster started (its own process ids only)."""
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in reversed(self.processes):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()
        if self.linked and DEFAULT_CONF.is_symlink() and DEFAULT_CONF.resolve() == self.conf:
            DEFAULT_CONF.unlink()
        self.linked = False
