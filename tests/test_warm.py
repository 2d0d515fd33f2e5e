"""Warm workers (mobileforge.warm): jobs run in fresh forks of one worker per run, with the job's
semantics under Snakemake unchanged: exit status, log, killing, dry runs, the fallback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from mobileforge import job_usage
from mobileforge.warm import client, protocol
from tests.conftest import REPO
from tests.waiting import wait_for

SNAKEFILE = REPO / "tests" / "warm" / "Snakefile"


def command(*targets: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--cores", "2", *targets]


def environ(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in (client.ENV, client.LOCAL_ENV, protocol.RUN_ENV)
    }
    return {**env, "MOBILEFORGE_WARM_IDLE_S": "30", **extra}


def run_jobs(workdir: Path, *targets: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        command(*targets), cwd=workdir, env=environ(**env), capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def sockets(workdir: Path) -> list[Path]:
    return sorted((workdir / protocol.DIRECTORY).glob("*.sock"))


def test_jobs_run_in_fresh_forks_of_one_worker_that_exits_with_the_run(tmp_path):
    done = run_jobs(tmp_path, "out/a.json", "out/b.json", "out/c.json")
    assert done.returncode == 0, done.stderr
    facts = [read(tmp_path / f"out/{name}.json") for name in "abc"]
    workers = {fact["ppid"] for fact in facts}
    assert len(workers) == 1, facts  # one worker served all three jobs, a and b at once,
    # c with other thread counts in its environment, which it got as its own process would
    assert [fact["omp_num_threads"] for fact in facts] == ["1", "1", "2"]
    assert len({fact["pid"] for fact in facts}) == 3  # each in a fork of its own
    assert all(fact["torch_loaded"] for fact in facts)  # imported by the worker, not the job
    assert all(fact["threads"] == 1 and fact["cwd"] == str(tmp_path) for fact in facts)
    assert "stdout of a" in done.stdout  # the job's own stdout reached Snakemake's
    for name in "abc":
        log = (tmp_path / f"logs/describe/{name}.log").read_text()
        assert f"running {name}" in log and "job usage (warm)" in log
        usage = job_usage.read(tmp_path / f"logs/describe/{name}.usage.json")
        assert usage["mode"] == "warm" and usage["wildcards"] == {"name": name}
        assert usage["overhead_s"] is not None and usage["overhead_s"] >= 0
    # The run ended: its worker stopped listening and exited.
    (worker,) = workers
    wait_for(lambda: not alive(worker), "the worker to exit at the run's end")
    assert sockets(tmp_path) == []


def test_with_warm_workers_off_each_job_runs_in_its_own_process(tmp_path):
    done = run_jobs(tmp_path, "out/a.json", MOBILEFORGE_WARM="0")
    assert done.returncode == 0, done.stderr
    assert read(tmp_path / "out/a.json")["torch_loaded"] is False
    log = (tmp_path / "logs/describe/a.log").read_text()
    assert "runs in its own process: MOBILEFORGE_WARM=0" in log
    assert job_usage.read(tmp_path / "logs/describe/a.usage.json")["mode"] == "cold"
    assert sockets(tmp_path) == []


def test_a_dry_run_starts_nothing(tmp_path):
    done = run_jobs(tmp_path, "out/a.json", "-n")
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / protocol.DIRECTORY).exists()
    assert not (tmp_path / "out").exists()


def test_a_failing_job_reports_its_reason_and_keeps_its_traceback(tmp_path):
    done = run_jobs(tmp_path, "broken/x.txt")
    assert done.returncode != 0
    assert "mobileforge: fail[name=x] failed: broken on purpose" in done.stdout + done.stderr
    log = (tmp_path / "logs/fail/x.log").read_text()
    assert "Traceback" in log and "ValueError: broken on purpose" in log
    assert job_usage.read(tmp_path / "logs/fail/x.usage.json")["mode"] == "warm"


def _job_process(run: subprocess.Popen) -> psutil.Process:
    # The job's own process: the Python running Snakemake's copy of the script (not the worker).
    def candidates() -> list[psutil.Process]:
        found = []
        for process in psutil.Process(run.pid).children(recursive=True):
            try:
                cmdline = " ".join(process.cmdline())
            except psutil.NoSuchProcess:
                continue
            if ".snakemake/scripts" in cmdline and "mobileforge.warm.worker" not in cmdline:
                found.append(process)
        return found

    wait_for(lambda: len(candidates()) == 1, "the job's process")
    return candidates()[0]


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGKILL])
def test_killing_a_job_process_kills_its_fork_before_it_writes(tmp_path, signal_number):
    with open(tmp_path / "snakemake.log", "w") as output:
        run = subprocess.Popen(
            command("waited/x.txt"), cwd=tmp_path, env=environ(), stdout=output,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        running = tmp_path / "running/x.json"
        wait_for(running.exists, "the job to start")
        child = read(running)["pid"]
        job = _job_process(run)
        assert alive(child) and job.pid != child
        job.send_signal(signal_number)
        wait_for(lambda: not alive(child), "the fork to die with its job")
        (tmp_path / "release").touch()  # a surviving fork would now write its output
        assert run.wait(timeout=300) != 0
    assert not (tmp_path / "waited/x.txt").exists()
    assert list(tmp_path.rglob("*.tmp")) == []


def test_a_killed_run_leaves_no_fork_and_its_worker_exits_when_idle(tmp_path):
    with open(tmp_path / "snakemake.log", "w") as output:
        # Its own session, so kill -9 of the group reaches Snakemake and its jobs, like a crash.
        run = subprocess.Popen(
            command("waited/x.txt"), cwd=tmp_path, env=environ(MOBILEFORGE_WARM_IDLE_S="2"),
            stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        wait_for((tmp_path / "running/x.json").exists, "the job to start")
        facts = read(tmp_path / "running/x.json")
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    wait_for(lambda: not alive(facts["pid"]), "the fork to die with the run")
    wait_for(lambda: not alive(facts["ppid"]), "the idle worker to exit")
    assert sockets(tmp_path) == []


def test_an_idle_worker_waits_while_its_run_goes_on(tmp_path):
    """The idle timeout is for runs that were killed: a 3 s spell with no warm job, three times
    the timeout, does not make the next job start a worker and pay its imports again."""
    done = run_jobs(tmp_path, "resumed/a.json", MOBILEFORGE_WARM_IDLE_S="1")
    assert done.returncode == 0, done.stderr
    before, after = read(tmp_path / "out/a.json"), read(tmp_path / "resumed/a.json")
    assert before["ppid"] == after["ppid"] and before["pid"] != after["pid"]
    (log,) = (tmp_path / protocol.DIRECTORY).glob("*.log")
    text = log.read_text()
    assert text.count("preloaded") == 1 and "stopping: idle" not in text
    assert "stopping: the run ended" in text


def test_a_stale_socket_is_replaced(tmp_path):
    assert run_jobs(tmp_path, "out/a.json").returncode == 0
    (log,) = (tmp_path / protocol.DIRECTORY).glob("*.log")
    stale = log.with_suffix(".sock")
    listener = protocol.bind(stale)
    listener.close()  # the file stays and nobody listens: what a worker killed with -9 leaves
    with pytest.raises(ConnectionRefusedError):
        protocol.connect(stale)
    done = run_jobs(tmp_path, "out/b.json")
    assert done.returncode == 0, done.stderr
    assert read(tmp_path / "out/b.json")["torch_loaded"]  # served warm, by a new worker
    assert job_usage.read(tmp_path / "logs/describe/b.usage.json")["mode"] == "warm"


def test_a_worker_with_threads_after_its_imports_never_forks(tmp_path):
    done = run_jobs(tmp_path, "threaded/x.json")
    assert done.returncode == 0, done.stderr
    assert read(tmp_path / "threaded/x.json")["torch_loaded"] is False  # its own process
    log = (tmp_path / "logs/threaded/x.log").read_text()
    assert "runs in its own process: the warm worker ended before the job's status" in log
    (worker_log,) = (tmp_path / protocol.DIRECTORY).glob("*.log")
    assert "refusing to fork" in worker_log.read_text()


def test_a_renamed_key_of_a_request_fails_by_name():
    record = {key: None for key in protocol.REQUEST_KEYS} | {"schema": protocol.REQUEST_SCHEMA}
    protocol.check_record(record, protocol.REQUEST_SCHEMA, protocol.REQUEST_KEYS)
    record["workdir"] = record.pop("cwd")
    with pytest.raises(protocol.ProtocolError, match=r"missing keys \['cwd'\].*\['workdir'\]"):
        protocol.check_record(record, protocol.REQUEST_SCHEMA, protocol.REQUEST_KEYS)


def test_jobs_whose_imports_would_differ_get_different_workers():
    def name(**env: str) -> str:
        return protocol.worker_name(["torch"], sys.executable, sys.path, env, "host")

    assert name(OMP_PROC_BIND="true") != name(OMP_PROC_BIND="false")
    assert name(OMP_NUM_THREADS="1") == name(OMP_NUM_THREADS="4")  # each job sets its own
    assert name(MOBILEFORGE_CORES_PER_CPU="1") == name(MOBILEFORGE_CORES_PER_CPU="4")
    assert protocol.worker_name(["torch", "executorch.exir"], sys.executable, sys.path, {}, "h") \
        != protocol.worker_name(["torch"], sys.executable, sys.path, {}, "h")  # fmt: skip


def test_sockets_work_in_run_directories_longer_than_a_unix_address(tmp_path):
    deep = tmp_path.joinpath(*(["a-rather-long-directory-name"] * 6))
    directory = protocol.prepare_directory(deep)
    assert len(str(directory)) > 120 and directory.stat().st_mode & 0o777 == 0o700
    listener = protocol.bind(directory / "w.sock")
    assert (directory / "w.sock").stat().st_mode & 0o777 == 0o600
    with listener, protocol.connect(directory / "w.sock") as sender:
        receiver, _ = listener.accept()
        with receiver:
            record = {key: None for key in protocol.REQUEST_KEYS}
            record["schema"] = protocol.REQUEST_SCHEMA
            protocol.send_record(sender, record, [0, 1, 2])
            received, fds = protocol.receive_record(
                receiver, protocol.REQUEST_SCHEMA, protocol.REQUEST_KEYS
            )
            assert received == record and len(fds) == 3
            for fd in fds:
                os.close(fd)


def test_warm_workers_serve_only_local_jobs_of_a_run():
    assert client.not_served_because({client.LOCAL_ENV: "1"}) is None
    assert "MOBILEFORGE_WARM=0" in client.not_served_because(
        {client.LOCAL_ENV: "1", client.ENV: "0"}
    )
    assert "not a local job" in client.not_served_because({})
    assert "SLURM_JOB_ID" in client.not_served_because({client.LOCAL_ENV: "1", "SLURM_JOB_ID": "7"})


def test_a_job_usage_record_with_a_renamed_key_fails_by_name(tmp_path):
    record = {key: 0 for key in job_usage.KEYS} | {"schema": job_usage.SCHEMA}
    record["cpu_s"] = record.pop("cpu_user_s")
    (tmp_path / "x.usage.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"missing \['cpu_user_s'\], unexpected \['cpu_s'\]"):
        job_usage.read(tmp_path / "x.usage.json")


def test_a_socket_directory_others_can_enter_is_refused(tmp_path):
    (tmp_path / protocol.DIRECTORY).mkdir(parents=True)
    (tmp_path / protocol.DIRECTORY).chmod(0o755)
    with pytest.raises(PermissionError, match="mode 0700"):
        protocol.prepare_directory(tmp_path)
