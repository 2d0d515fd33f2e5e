"""Device-side benchmark runners for the emulated phones: scripts with the real binaries' flags.

* :data:`SPEED_BENCHMARK_TORCH` and :data:`EXECUTOR_RUNNER` behave like PyTorch's
  ``speed_benchmark_torch`` and ExecuTorch's ``executor_runner`` (same flags, same output lines)
  and really load and run the artifact with torch / the ExecuTorch runtime.
  :data:`EXECUTOR_RUNNER_ETDUMP` is an ``executor_runner`` built with the event tracer: it also
  has ``--etdump_path`` and writes a real ETDump there after its executions (the pip runtime's
  ``enable_etdump``). Both answer ``--help`` the gflags way (flags listed on stdout, exit 1) and
  refuse a flag they do not define (``ERROR: unknown command line flag``, exit 1).
* :data:`LIGHT_RUNNER` speaks both contracts without importing anything heavy: it sleeps the
  latency it is told (``<phone root>/latency_ms.<artifact file name>``, else
  ``<phone root>/latency_ms``, default 2) per iteration, after an optional
  ``runner_sleep`` (seconds) before its first one, so workflow tests of many jobs stay fast.
  ``old_runner`` in the phone root makes it reject ``--print_output`` like an executor_runner
  older than v1.3; ``crash`` makes it die with exit 3.

Every runner appends ``start <t> <pid> <argv json>`` and ``end <t> <pid>`` (or ``killed``) to
``<phone root>/runs.log``, so tests can tell what ran on a phone and when.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

_LOG = """\
import json, os, signal, sys, time
ROOT = os.environ["MF_PHONE_ROOT"]
def log(what):
    with open(os.path.join(ROOT, "runs.log"), "a") as fh:
        fh.write(f"{what} {time.time()} {os.getpid()}\\n")
def on_term(signum, frame):
    log("killed")
    sys.exit(143)
signal.signal(signal.SIGTERM, on_term)
with open(os.path.join(ROOT, "runs.log"), "a") as fh:
    fh.write(f"start {time.time()} {os.getpid()} {json.dumps(sys.argv[1:])}\\n")
flags = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
"""

SPEED_BENCHMARK_TORCH = f"""\
#!{sys.executable}
# Stand-in for PyTorch's speed_benchmark_torch (lite-interpreter build): same flags, same
# output, real inference.
{_LOG}
import torch, torch.jit.mobile
module = torch.jit.mobile._load_for_lite_interpreter(flags["model"])
x = torch.ones([int(d) for d in flags["input_dims"].split(",")])
print("Starting benchmark.")
for _ in range(int(flags.get("warmup", "0"))):
    module(x)
times = []
for _ in range(int(flags.get("iter", "10"))):
    t = time.perf_counter()
    module(x)
    times.append((time.perf_counter() - t) * 1e6)
if flags.get("report_pep") == "true":
    for t in times:
        # iostream prints floats with 6 significant digits, like %g
        print('PyTorchObserver {{"type": "NET", "unit": "us", "metric": "latency", '
              '"value": "%s"}}' % format(t, "g"))
print("Main run finished. Microseconds per iter: %g." % (sum(times) / len(times)))
log("end")
"""

_GFLAGS_HELP = """\
#!{python}
# gflags' --help: every flag the binary defines, on stdout, exit 1; an unknown flag refused.
import sys
FLAGS = {flags!r}
if "--help" in sys.argv[1:]:
    print("executor_runner: Warning: SetUsageMessage() never called\\n")
    print("  Flags from examples/portable/executor_runner/executor_runner.cpp:")
    for name, text in sorted(FLAGS.items()):
        print("    -%s (%s) type: string" % (name, text))
    sys.exit(1)
for arg in sys.argv[1:]:
    name = arg[2:].split("=", 1)[0] if arg.startswith("--") else None
    if name is not None and name not in FLAGS:
        sys.stderr.write("ERROR: unknown command line flag '%s'\\n" % name)
        sys.exit(1)
"""
_EXECUTOR_FLAGS = {
    "model_path": "Model serialized in flatbuffer format.",
    "num_executions": "Number of times to run the model.",
    "cpu_threads": "Number of CPU threads for inference.",
    "print_output": "Output printing mode.",
}


def _executor_runner(etdump: bool) -> str:
    flags = dict(_EXECUTOR_FLAGS)
    if etdump:
        flags["etdump_path"] = "Write ETDump data to this path."
    head = _GFLAGS_HELP.format(python=sys.executable, flags=flags)
    built = " with ETDump on (event tracer build)" if etdump else ""
    body = f"""\
# Stand-in for ExecuTorch's executor_runner (posix logging build): same flags and log lines,
# real execution through the ExecuTorch runtime{built}.
{_LOG}
def et_log(msg):
    sys.stderr.write("I 00:00:00.000000 executorch:executor_runner.cpp:1] %s\\n" % msg)
import torch
from executorch.runtime import Runtime
from executorch.extension.pybindings import portable_lib
ETDUMP = {etdump!r}
n = int(flags.get("cpu_threads", "-1"))
if n > 0:
    et_log("Resetting threadpool with num threads = %d" % n)
    portable_lib._unsafe_reset_threadpool(n)
t = time.perf_counter()
program = Runtime.get().load_program(flags["model_path"], enable_etdump=ETDUMP, debug_buffer_size=0)
method = program.load_method("forward")
et_log("Model loaded in %f ms." % ((time.perf_counter() - t) * 1e3))
meta = method.metadata
inputs = [torch.ones(list(meta.input_tensor_meta(i).sizes())) for i in range(meta.num_inputs())]
runs = int(flags.get("num_executions", "1"))
for i in range(runs):
    t = time.perf_counter()
    method.execute(inputs)
    et_log("Iteration %d of %d: %f ms" % (i + 1, runs, (time.perf_counter() - t) * 1e3))
if ETDUMP:  # the real one writes it after the runs, to --etdump_path (default model.etdump)
    path = flags.get("etdump_path", "model.etdump")
    program.write_etdump_result_to_file(path, path + ".debug")
    if os.path.exists(path + ".debug"):
        os.remove(path + ".debug")  # debug_buffer_size=0: nothing in it
    et_log("ETDump written to file '%s'." % path)
log("end")
"""
    return head + body


EXECUTOR_RUNNER = _executor_runner(etdump=False)
EXECUTOR_RUNNER_ETDUMP = _executor_runner(etdump=True)

LIGHT_RUNNER = f"""\
#!{sys.executable}
# Both runner contracts, no real inference: sleeps the configured latency per iteration.
# Its --help lists executor_runner's flags without --etdump_path (not an event-tracer build).
import sys
if sys.argv[1:] == ["--help"]:
    print("    -model_path (Model serialized in flatbuffer format.) type: string")
    sys.exit(1)
{_LOG}
def setting(name, default):
    try:
        return float(open(os.path.join(ROOT, name)).read())
    except OSError:
        return default
if os.path.exists(os.path.join(ROOT, "crash")):
    print("loading " + flags.get("model", flags.get("model_path", "?")))
    sys.stderr.write("terminate called after throwing an instance of 'c10::Error'\\n")
    log("end")
    sys.exit(3)
if "print_output" in flags and os.path.exists(os.path.join(ROOT, "old_runner")):
    sys.stderr.write("ERROR: unknown command line flag 'print_output'\\n")
    log("end")
    sys.exit(1)
time.sleep(setting("runner_sleep", 0.0))
model = os.path.basename(flags.get("model", flags.get("model_path", "")))
latency = setting("latency_ms." + model, setting("latency_ms", 2.0))
if "model" in flags:
    for _ in range(int(flags["warmup"])):
        time.sleep(latency / 1e3)
    for _ in range(int(flags["iter"])):
        time.sleep(latency / 1e3)
        print('PyTorchObserver {{"type": "NET", "unit": "us", "metric": "latency", '
              '"value": "%g"}}' % (latency * 1e3))
else:
    n = int(flags["cpu_threads"])
    sys.stderr.write("I executor_runner.cpp:1] Resetting threadpool with num threads = %d\\n" % n)
    sys.stderr.write("I executor_runner.cpp:1] Model loaded in 1.500000 ms.\\n")
    runs = int(flags["num_executions"])
    for i in range(runs):
        time.sleep(latency / 1e3)
        sys.stderr.write("I executor_runner.cpp:1] Iteration %d of %d: %f ms\\n"
                         % (i + 1, runs, latency))
log("end")
"""


def write_runner(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text, encoding="utf-8")
    path.chmod(0o755)
    return path


def runs_log(root: Path) -> list[dict]:
    """Parse a phone's ``runs.log``: one dict per runner process, by pid, in start order."""
    procs: dict[int, dict] = {}
    path = root / "runs.log"
    for line in path.read_text().splitlines() if path.exists() else []:
        what, when, pid, *rest = line.split(" ", 3)
        entry = procs.setdefault(int(pid), {"pid": int(pid)})
        entry[what] = float(when)
        if what == "start":
            entry["argv"] = json.loads(rest[0])
    return sorted(procs.values(), key=lambda e: e.get("start", 0.0))
