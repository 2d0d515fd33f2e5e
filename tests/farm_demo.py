"""A farm of emulated phones behind the real adb server, benchmarked by the real workflow.

    python -m tests.farm_demo --phones 3 --cores 4 --workdir /tmp/farm-demo

Starts Debian's adb server on a free loopback port and ``--phones`` emulated phones
(tests/emulated_phone.py), writes a one-model config benchmarking every variant's ``.ptl`` on
each phone (the light runner sleeping ``--runner-sleep`` s per process), runs
``snakemake --cores N``, prints the timeline of the result JSONs (mobileforge.bench.timeline),
then reruns only the benchmarks (artifacts and runners already on the phones) and prints each
job's overhead beyond the runner's own time. Everything is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import median

import yaml

from mobileforge.bench import farm, timeline
from tests.adb_server import AdbServer
from tests.conftest import REPO
from tests.emulated_phone import EmulatedPhone
from tests.runners import LIGHT_RUNNER, write_runner


def config(workdir: Path, port: int, phones: list[EmulatedPhone], repeats: int) -> Path:
    runner = str(write_runner(workdir / "bin", "runner", LIGHT_RUNNER))
    raw = {
        "defaults": {
            "input_shape": [1, 3, 16, 16],
            "train": {"epochs": 1, "batch_size": 32, "seed": 0, "threads": 1},
            "quantize": {"calibration_batches": 2, "batch_size": 16},
        },
        "models": {"alpha": {"arch": "tinycnn", "kwargs": {"width": 8}}},
        "dataset": {"name": "shapes", "train_size": 128, "calib_size": 32, "eval_size": 32},
        "formats": ["ptl"],
        "devices": {
            f"phone{i}": {"kind": "adb", "serial": p.serial, "adb_port": port, "runner": runner}
            for i, p in enumerate(phones)
        },
        "benchmark": {"warmup": 2, "iterations": 20, "repeats": repeats},
    }
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def snakemake(workdir: Path, config: Path, cores: int, *args: str) -> None:
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
               "--configfile", str(config), "--cores", str(cores), *args]  # fmt: skip
    env = {**os.environ, farm.LOCK_DIR_ENV: str(workdir / "locks")}  # ports differ every time
    result = subprocess.run(
        command, cwd=workdir, env=env, capture_output=True, text=True, timeout=3600
    )
    if result.returncode != 0:
        raise SystemExit(f"snakemake failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


def overheads(workdir: Path) -> list[dict]:
    rows = []
    for path in sorted(workdir.glob("results/*/bench/*/*.json")):
        result = json.loads(path.read_text())
        timing = result["timing"]
        name = f"alpha.ptl.{Path(result['artifact']).stem}.{result['device']}.tsv"
        tsv = workdir / "benchmarks/benchmark" / name
        snakemake_s = float(tsv.read_text().splitlines()[1].split("\t")[0])
        rows.append(
            {
                "job": path.name,
                "pushed": len(result["pushed"]),
                "runner_s": timing["runner_s"],
                "in_job_overhead_s": timing["job_s"] - timing["runner_s"],
                "startup_s": timing["startup_s"],
                "process_overhead_s": timing["process_s"] - timing["runner_s"],
                "snakemake_job_overhead_s": snakemake_s - timing["runner_s"],
                "round_trips": timing["round_trips"],
            }
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phones", type=int, default=3)
    parser.add_argument("--cores", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--runner-sleep", type=float, default=1.0)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="farm-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    server = AdbServer(workdir / "adb-home").start()
    phones: list[EmulatedPhone] = []
    try:
        for i in range(args.phones):
            phone = EmulatedPhone(workdir / f"phone{i}")
            (phone.root / "runner_sleep").write_text(str(args.runner_sleep))
            server.connect(phone)
            phones.append(phone)
        path = config(workdir, server.port, phones, args.repeats)
        snakemake(workdir, path, args.cores)
        print(f"== first run (--cores {args.cores}): timeline of the result JSONs")
        timeline.main([str(p) for p in sorted(workdir.glob("results/*/bench/*/*.json"))])
        for row in overheads(workdir):
            print(f"first run, pushed {row['pushed']}: {row}")
        snakemake(workdir, path, args.cores, "--forcerun", "benchmark_adb")
        print("== rerun of the benchmarks only (runner and artifacts already on the phones)")
        timeline.main([str(p) for p in sorted(workdir.glob("results/*/bench/*/*.json"))])
        rows = overheads(workdir)
        for row in rows:
            print(row)
        keys = ("in_job_overhead_s", "startup_s", "process_overhead_s", "snakemake_job_overhead_s")
        for key in keys:
            values = [row[key] for row in rows]
            print(f"{key}: median {median(values):.3f} s, max {max(values):.3f} s")
        for i, phone in enumerate(phones):
            print(f"phone{i}: {len(phone.pushed)} pushes in both runs, errors {phone.errors}")
    finally:
        for phone in phones:
            server.disconnect(phone)
            phone.close()
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
