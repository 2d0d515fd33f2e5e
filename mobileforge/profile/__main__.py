"""Profile artifacts on this host: ``python -m mobileforge.profile A.pte B.ptl ...``.

Each artifact is benchmarked (fresh processes, as a benchmark job does) and profiled (as a
profile job does); prints its top layers and how their sum compares with the benchmark's p50.
Input shape, format and engine come from the artifact's sidecar, or from the flags.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mobileforge import files
from mobileforge.compare import _shape


def _sidecar(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    sidecar_path = Path(files.sidecar_path(str(path)))
    found = json.loads(sidecar_path.read_text()) if sidecar_path.exists() else {}
    fmt = found.get("format") or path.suffix.lstrip(".")
    shape = found.get("input_shape") or args.input_shape
    if fmt not in ("ptl", "pte") or not shape:
        raise SystemExit(f"{path}: no sidecar ({sidecar_path}); give --input-shape (1,3,H,W)")
    return {
        "model": found.get("model", path.parent.name),
        "format": fmt,
        "variant": found.get("variant", path.name.split(".")[0]),
        "input_shape": list(shape),
        "engine": found.get("engine", args.engine if fmt == "ptl" else None),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("artifacts", nargs="+", type=Path)
    p.add_argument("--threads", type=int, default=1, help="runtime threads (default: 1)")
    p.add_argument("--runs", type=int, default=5, help="profiled runs (default: 5)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs first (default: 3)")
    p.add_argument("--iterations", type=int, default=50, help="benchmark runs per process")
    p.add_argument("--repeats", type=int, default=3, help="benchmark processes")
    p.add_argument("--top", type=int, default=5, help="layers to print (default: 5)")
    p.add_argument("--input-shape", type=_shape, help="for files without a sidecar: 1,3,H,W")
    p.add_argument("--engine", help="torch quantized engine for an int8 .ptl without a sidecar")
    p.add_argument(
        "--float-model",
        type=Path,
        help="the fused (or pruned) fp32 stage file the "
        "artifacts were built from, e.g. results/<model>/fused.pt: MACs per layer",
    )
    p.add_argument("--json", dest="json_dir", type=Path, help="also write each record here")
    args = p.parse_args(argv)

    from mobileforge.bench.host.repeats import run_host_repeats
    from mobileforge.profile.host import profile_on_host
    from mobileforge.profile.record import from_raw

    macs = None
    if args.float_model:
        from mobileforge import chain
        from mobileforge.macs import module_macs

        model, meta = chain.load_fused_model(args.float_model)
        macs = module_macs(model, meta["input_shape"])
    for path in args.artifacts:
        sidecar = _sidecar(path, args)
        fmt, shape, engine = sidecar["format"], sidecar["input_shape"], sidecar["engine"]
        bench = run_host_repeats(str(path), fmt, shape, args.threads, warmup=args.warmup,
                                 iterations=args.iterations, repeats=args.repeats,
                                 engine=engine)  # fmt: skip
        raw = profile_on_host(path, fmt, shape, args.threads, args.runs, args.warmup, engine)
        record = from_raw(raw, sidecar, str(path), "host", "host", args.warmup,
                          bench["latency_ms"]["p50"], macs)  # fmt: skip
        print(f"{path} ({record['method']}, {args.threads} thread(s), {record['runs']} runs)")
        for row in record["layers"][: args.top]:
            print(f"  {row['median_ms']:8.3f} ms {row['share']:6.1%}  {row['kind']:<10} "
                  f"{row['name']}" + (f" x{row['calls']}" if row["calls"] > 1 else "")
                  + (f"  [{row['module']}]" if row["module"] else ""))  # fmt: skip
        kinds: dict[str, float] = {}
        for row in record["layers"]:
            kinds[row["kind"]] = kinds.get(row["kind"], 0.0) + row["share"]
        print("  by kind: " + ", ".join(f"{k} {v:.1%}" for k, v in sorted(kinds.items())))
        print(f"  {record['agreement']} (agrees: {record['agrees']})")
        for warning in record["warnings"]:
            print(f"  warning: {warning}")
        if args.json_dir:
            args.json_dir.mkdir(parents=True, exist_ok=True)
            (args.json_dir / f"{path.name}.profile.json").write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
