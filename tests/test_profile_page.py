"""The profile page of a model, from constructed records (no workflow run): top layers in
order, q/dq and layout conversions as such, what an fp32 fallback costs, unavailable devices,
and summary.md's link to the page."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from mobileforge import plan, profile_page, records, summary_tables
from mobileforge.config import resolve_config
from mobileforge.job import Job
from mobileforge.stages import report as report_stage
from tests.test_paths import REPO
from tests.test_report import PEAKS, _summary

MODEL = "vit"
QKV = "blocks.0.attn.qkv"


def _sidecar(fmt, variant, backend, engine=None, fp32_layers=None, prune=None) -> dict:
    stem = ".".join([variant] + ([engine] if engine else []) + [backend])
    return {
        "artifact": f"results/{MODEL}/{fmt}/{stem}.{fmt}",
        "model": MODEL,
        "format": fmt,
        "variant": variant,
        "backend": backend,
        "engine": engine,
        "fp32_layers": None if variant == "fp32" else list(fp32_layers or []),
        "prune": prune,
    }


SIDECARS = {
    "pte_fp32": _sidecar("pte", "fp32", "xnnpack"),
    "pte_int8": _sidecar("pte", "int8", "xnnpack", fp32_layers=[QKV, "head"]),
    "pte_dynamic": _sidecar("pte", "int8_dynamic", "xnnpack"),
    "ptl_fp32": _sidecar("ptl", "fp32", "cpu"),
    "ptl_int8": _sidecar("ptl", "int8", "cpu", engine="x86", fp32_layers=["head"]),
}


def _layer(name, kind, us, module=None, macs=None, calls=1) -> dict:
    return {"name": name, "kind": kind, "module": module, "calls": calls,
            "median_ms": us / 1000.0, "share": 0.0, "macs": macs, "gmacs_per_s": None}  # fmt: skip


def _profile(sidecar, layers, p50_ms, device="host", kind="host") -> dict:
    """A Profile record as the profile rule writes it: shares, sums, agreement filled in."""
    layers = sorted(copy.deepcopy(layers), key=lambda x: x["median_ms"], reverse=True)
    total = sum(x["median_ms"] for x in layers)
    for layer in layers:
        layer["share"] = layer["median_ms"] / total
        if layer["macs"]:
            layer["gmacs_per_s"] = layer["macs"] / (layer["median_ms"] * 1e6)
    coverage = total / p50_ms
    record = {
        "artifact": sidecar["artifact"], "model": MODEL, "format": sidecar["format"],
        "variant": sidecar["variant"], "device": device, "device_kind": kind,
        "method": "etdump" if sidecar["format"] == "pte" else "lite_profiler",
        "unavailable": None, "runs": 20, "warmup": 5, "threads": 1, "layers": layers,
        "layers_ms": total, "end_to_end_ms": total * 1.05, "outside_ms": total * 0.05,
        "profiler_overhead_ms": None,
        "benchmark_p50_ms": p50_ms, "coverage": coverage, "agrees": abs(coverage - 1) <= 0.2,
        "agreement": f"per-layer sum {total:.3f} ms is {coverage:.0%} of the benchmark's p50 "
                     f"{p50_ms:.3f} ms: within 20%",
        "warnings": [], "torch_version": "2.13.0", "executorch_version": "1.5.1",
        "toolchain": None,
    }  # fmt: skip
    return dict(records.check(records.Profile, record, f"{sidecar['artifact']} on {device}"))


def _unavailable(sidecar, device, why) -> dict:
    record = {
        **_profile(sidecar, [_layer("x", "compute", 1.0)], 1.0, device, "adb"),
        "unavailable": why, "runs": 0, "warmup": 0, "threads": None, "layers": [],
        "layers_ms": None, "end_to_end_ms": None, "outside_ms": None, "benchmark_p50_ms": None,
        "profiler_overhead_ms": None,
        "coverage": None, "agrees": None, "agreement": f"no profile: {why}",
    }  # fmt: skip
    return dict(records.check(records.Profile, record, "unavailable"))


# .pte int8 with XNNPACK: 12 layers, so the table shows 10 and sums the other 2; qkv kept fp32
# (an F32 fully connected with the converts around it mapped to its module).
PTE_INT8 = [
    _layer("Convolution (NHWC, QS8) IGEMM #1", "compute", 210.0, "patch", macs=6_000_000),
    _layer("Fully Connected (NC, F32) GEMM #4", "compute", 120.0, QKV, macs=3_000_000),
    _layer("Fully Connected (NC, QS8) GEMM #5", "compute", 90.0, "blocks.0.attn.proj"),
    _layer("Convert (NC, QS8, F32) #3", "dequantize", 40.0, QKV),
    _layer("Convert (NC, F32, QS8) #6", "quantize", 30.0, QKV),
    _layer("Transpose (ND, X8) #7", "layout", 25.0),
    _layer("native_call__to_dim_order_copy.out", "layout", 15.0),
    _layer("Softmax (NC, F32) #8", "compute", 60.0),
    _layer("Fully Connected (NC, F32) GEMM #9", "compute", 50.0, "head"),
    _layer("DELEGATE_CALL (outside its operators)", "delegate", 20.0),
    _layer("Max Pooling (NHWC, S8) #10", "compute", 8.0),
    _layer("Global Average Pooling (NWC, QS8) #11", "compute", 2.0),
]
EXPORTED_QKV = "L__self___blocks_0_attn_qkv"
# Dynamic int8: qkv runs int8 (QD8 activations, QC8W weights); torch.export's module names.
PTE_DYNAMIC = [
    _layer("Convolution (NHWC, F32) IGEMM #1", "compute", 400.0, "L__self___patch"),
    _layer("Fully Connected (NC, QD8, F32, QC8W) #4", "compute", 45.0, EXPORTED_QKV),
    _layer("Convert (NC, F32, QD8) #3", "quantize", 15.0, EXPORTED_QKV),
    _layer("Fully Connected (NC, QD8, F32, QC8W) #9", "compute", 20.0, "L__self___head"),
]  # fmt: skip
PTE_FP32 = [
    _layer("Convolution (NHWC, F32) IGEMM #1", "compute", 400.0, "patch"),
    _layer("Fully Connected (NC, F32) GEMM #4", "compute", 110.0, QKV),
]
# The lite interpreter: no module names (the .ptl is saved without debug info).
PTL_INT8 = [
    _layer("quantized::conv2d", "compute", 300.0, calls=1),
    _layer("aten::linear", "compute", 70.0),
    _layer("aten::dequantize", "dequantize", 20.0, calls=2),
    _layer("aten::quantize_per_tensor", "quantize", 15.0, calls=2),
    _layer("aten::permute", "layout", 10.0, calls=4),
    _layer("quantized::linear", "compute", 60.0, calls=3),
    _layer("aten::max_pool2d #1", "compute", 5.0),  # on int8 tensors: its name does not say
]
PTL_FP32 = [_layer("aten::conv2d", "compute", 900.0), _layer("aten::linear", "compute", 200.0)]
WHY = "this phone's executor_runner has no --etdump_path"
NO_DEBUG_INFO = "module is None: the .ptl was saved without mobile debug info"


def _profiles() -> list[dict]:
    return [
        _profile(SIDECARS["pte_int8"], PTE_INT8, 0.70),
        _profile(SIDECARS["pte_dynamic"], PTE_DYNAMIC, 0.50),
        _profile(SIDECARS["pte_fp32"], PTE_FP32, 0.52),
        {**_profile(SIDECARS["ptl_int8"], PTL_INT8, 0.50), "warnings": [NO_DEBUG_INFO]},
        _profile(SIDECARS["ptl_fp32"], PTL_FP32, 1.2),
        _unavailable(SIDECARS["pte_fp32"], "pixel", WHY),
        _unavailable(SIDECARS["pte_int8"], "pixel", WHY),
    ]


def _ranked(*layers) -> list[dict]:
    return [
        {"layer": name, "type": kind, "sqnr_db": sqnr, "top1_agreement": agreement, "rank": rank}
        for rank, (name, kind, sqnr, agreement) in enumerate(layers, 1)
    ]


SENSITIVITIES = [
    {"model": MODEL, "variant": "int8", "format": "pte", "quantizer": "xnnpack",
     "layers": _ranked((QKV, "Linear", 11.5, 91.0), ("head", "Linear", 14.0, 95.0),
                       ("patch", "Conv2d", 30.0, 99.9))},
    {"model": MODEL, "variant": "int8", "format": "ptl", "quantizer": "x86",
     "layers": _ranked(("head", "Linear", 12.0, 93.0))},
]  # fmt: skip


def _markdown() -> str:
    markdown, _ = profile_page.render(MODEL, _profiles(), list(SIDECARS.values()), SENSITIVITIES)
    return markdown


def _section(markdown: str, heading: str) -> str:
    """The text under ``heading`` (a whole heading line) up to the next heading."""
    start = markdown.index(heading + "\n")
    rest = markdown[start + len(heading) + 1 :]
    end = re.search(r"^#+ ", rest, re.M)
    return rest[: end.start()] if end else rest


def _rows(section: str) -> list[list[str]]:
    lines = [line for line in section.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines[2:]]


def test_top_layers_in_order_with_q_dq_and_layout_as_their_own_kind():
    part = _section(_markdown(), "### .pte int8 (xnnpack) on host")
    rows = _rows(part)
    assert len(rows) == profile_page.TOP == 10
    times = [float(row[5]) for row in rows]
    assert times == sorted(times, reverse=True) and times[0] == 210
    assert rows[0][1:4] == ["Convolution (NHWC, QS8) IGEMM #1", "compute", "patch"]
    kinds = {row[1]: row[2] for row in rows}
    assert kinds["Convert (NC, QS8, F32) #3"] == "dequantize"
    assert kinds["Convert (NC, F32, QS8) #6"] == "quantize"
    assert kinds["Transpose (ND, X8) #7"] == "layout"
    # 6 M MACs in 210 µs: 28.6 GMAC/s; the share of the 670 µs per-layer sum.
    assert rows[0][7] == "28.6" and rows[0][6] == f"{100 * 210 / 670:.1f} %"
    assert "the other 2 take 10.0 µs (1.5 %)" in part
    # q/dq: 70 of 670 µs; layout: 40 of 670 µs.
    assert "Quantize/dequantize: 10.4 % of the per-layer time (2 layers)" in part
    assert "layout conversions: 6.0 % (2 layers)" in part
    assert "Per-layer sum against the benchmark: agrees (per-layer sum 0.670 ms is 96%" in part
    # F32 GEMMs and softmax; not the S8 pooling nor the X8 transpose.
    assert (
        "Float compute in this int8 artifact: 230 µs (34.3 % of the per-layer time) in 3 " in part
    )


def test_every_artifact_side_by_side_per_device_in_the_page_s_order():
    markdown = _markdown()
    overview = _rows(_section(markdown, "### host: every artifact side by side"))
    assert [row[0] for row in overview] == [
        ".ptl fp32 (cpu)",
        ".ptl int8 (x86, cpu)",
        ".pte fp32 (xnnpack)",
        ".pte int8 (xnnpack)",
        ".pte int8_dynamic (xnnpack)",
    ]
    ptl_int8 = overview[1]
    assert ptl_int8[4] == f"{100 * 35 / 480:.1f} %" and ptl_int8[5] == f"{100 * 10 / 480:.1f} %"
    assert ptl_int8[6] == f"quantized::conv2d ({100 * 300 / 480:.1f} %)"
    assert overview[3][3] == "95.7 %" and overview[3][7] == "2" and overview[2][7] == "–"


def test_fallback_cost_is_the_time_kept_in_fp32_minus_the_time_in_int8_elsewhere():
    profiles = {(p["artifact"], p["device"]): p for p in _profiles()}
    host = [profile_page._Artifact(profiles[(s["artifact"], "host")], s) for s in SIDECARS.values()]
    int8 = next(a for a in host if a.sidecar is SIDECARS["pte_int8"])
    qkv, head = profile_page.fallbacks(int8, host)
    # Kept fp32: its F32 GEMM and the two converts mapped to it, 190 µs; in the dynamic int8
    # artifact (torch.export's module names) the QD8 GEMM and its convert, 60 µs.
    assert qkv.here_ms == pytest.approx(0.190) and qkv.int8_ms == pytest.approx(0.060)
    assert qkv.cost_ms == pytest.approx(0.130) and qkv.fp32_ms == pytest.approx(0.110)
    assert qkv.int8_in == ".pte int8_dynamic (xnnpack)" and qkv.note == ""
    assert head.cost_ms == pytest.approx(0.050 - 0.020)
    part = _section(_markdown(), "#### .pte int8 (xnnpack) on host: layers kept in fp32")
    rows = {row[0]: row for row in _rows(part)}
    assert rows[QKV][1:7] == ["1 (11.5)", "190", "60.0", ".pte int8_dynamic (xnnpack)", "+130",
                              "110"]  # fmt: skip
    assert "Together the 2 fallbacks priced here cost +160 µs per inference." in part


def test_a_fallback_without_module_names_is_said_to_be_unmatched_with_the_float_total():
    part = _section(_markdown(), "#### .ptl int8 (x86, cpu) on host: layers kept in fp32")
    (row,) = _rows(part)
    # Its int8 time is known from the other format's artifact, its time here is not: no cost.
    assert row[0] == "head" and row[1] == "1 (12.0)" and row[2:6] == [
        "–", "20.0", ".pte int8_dynamic (xnnpack)", "–"
    ]  # fmt: skip
    assert "no layer of this profile maps back to module `head`" in row[7]
    assert "int8 time from the other format" in row[7]
    # aten::linear runs in float inside the int8 .ptl; quantized:: ops do not.
    assert "part of the 70.0 µs of float compute in this artifact (1 layer," in part
    body = _section(_markdown(), "### .ptl int8 (x86, cpu) on host")
    assert "Float compute in this int8 artifact: 70.0 µs" in body
    assert f"Profile warning: {NO_DEBUG_INFO}" in body


def test_the_int8_reference_prefers_the_same_format_then_unpruned():
    pruned = _sidecar("pte", "int8_pruned-l1_unstructured-0.3", "xnnpack",
                      prune={"method": "l1_unstructured", "amount": 0.3})  # fmt: skip
    other_format = _sidecar("ptl", "int8", "cpu", engine="x86")
    kept = _sidecar("pte", "int8", "xnnpack", fp32_layers=[QKV])
    fp32_there = [_layer("Fully Connected (NC, F32) #4", "compute", 100.0, QKV)]
    int8_there = [_layer("Fully Connected (NC, QS8) #4", "compute", 30.0, QKV)]
    artifacts = [
        profile_page._Artifact(_profile(kept, fp32_there, 0.1), kept),
        profile_page._Artifact(_profile(other_format, int8_there, 0.03), other_format),
        profile_page._Artifact(_profile(pruned, int8_there, 0.03), pruned),
    ]
    (fallback,) = profile_page.fallbacks(artifacts[0], artifacts)
    assert fallback.int8_in == ".pte int8_pruned-l1_unstructured-0.3 (xnnpack)"
    assert "pruned" in fallback.note
    (alone,) = profile_page.fallbacks(artifacts[0], artifacts[:1])
    assert alone.cost_ms is None and "no other int8 artifact" in alone.note


def test_a_device_without_profiles_gets_one_line_saying_why():
    markdown = _markdown()
    part = _section(markdown, "## pixel (a phone over adb)")
    assert part.strip() == f"No profile of .pte fp32 (xnnpack), .pte int8 (xnnpack): {WHY}"
    assert "### pixel: every artifact side by side" not in markdown


def test_sensitivity_marks_the_layers_kept_in_fp32():
    rows = _rows(_section(_markdown(), "## int8 sensitivity"))
    assert rows[0] == [".pte xnnpack int8", "1", QKV, "Linear", "11.5", "91.0 %", "yes"]
    assert rows[2][2] == "patch" and rows[2][6] == ""


def test_the_html_twin_holds_the_same_sections():
    markdown, page = profile_page.render(MODEL, _profiles(), list(SIDECARS.values()), SENSITIVITIES)
    headings = re.findall(r"^#{2,4} (.+)$", markdown, re.M)
    assert re.findall(r"<h[2-4]>(.+?)</h[2-4]>", page) == headings


def test_summary_md_links_each_page_and_keeps_its_other_bytes(tmp_path):
    frame, _ = _summary()
    pages = {
        "resnet18": plan.profile_page_paths("resnet18"),
        "tinycnn": plan.profile_page_paths("tinycnn"),
    }
    out = {
        name: tmp_path / "results" / rel
        for name, rel in (("csv", "summary.csv"), ("md", "summary.md"), ("html", "report/x.html"))
    }
    out["html"].parent.mkdir(parents=True)
    pages = {model: {form: str(tmp_path / p) for form, p in paths.items()}
             for model, paths in pages.items()}  # fmt: skip
    summary_tables.write_summaries(frame, PEAKS, 1.0, *out.values(), pages=pages)
    markdown = out["md"].read_text()
    assert "[tinycnn](report/profile/tinycnn.md)" in markdown
    assert '<a href="profile/tinycnn.html">tinycnn</a>' in out["html"].read_text()
    without = summary_tables.to_markdown(summary_tables.sections(frame, PEAKS, 1.0))
    link_section = _section(markdown, "## Where the time goes, layer by layer")
    assert markdown.replace("## Where the time goes, layer by layer\n" + link_section, "") == (
        without
    )


def test_a_renamed_key_in_a_profile_or_one_of_its_layers_fails_by_name():
    record = _profiles()[0]
    record["median_ms"] = record.pop("layers_ms")
    with pytest.raises(records.RecordError, match=r"lacks \['layers_ms'\].*median_ms"):
        records.check(records.Profile, record, "a profile")
    record = _profiles()[0]
    record["layers"][3]["time_ms"] = record["layers"][3].pop("median_ms")
    with pytest.raises(records.RecordError, match=r"key 'layers'\[3\].*lacks \['median_ms'\]"):
        records.check(records.Profile, record, "a profile")


def test_the_stage_reads_profiles_sidecars_and_sensitivities_and_writes_both_pages(tmp_path):
    from mobileforge import files

    inputs = {"profiles": [], "artifacts": [], "sensitivities": []}
    for index, profile in enumerate(_profiles()):
        path = tmp_path / f"profile{index}.json"
        files.write_json_atomic(path, profile)
        inputs["profiles"].append(str(path))
    for name, sidecar in SIDECARS.items():
        artifact = tmp_path / f"{name}.bin"
        sidecar = {**sidecar, **_SIDECAR_REST}
        files.write_json_atomic(f"{artifact}.json", sidecar)
        inputs["artifacts"].append(str(artifact))
    for index, record in enumerate(SENSITIVITIES):
        files.write_json_atomic(tmp_path / f"s{index}.json", record)
        inputs["sensitivities"].append(str(tmp_path / f"s{index}.json"))
    output = {"markdown": str(tmp_path / "page.md"), "html": str(tmp_path / "page.html")}
    job = Job(input=inputs, output=output, params={}, wildcards={"model": MODEL})
    report_stage.profile_page(job)
    assert (tmp_path / "page.md").read_text() == _markdown()
    assert (tmp_path / "page.html").read_text().startswith("<!doctype html>")


_SIDECAR_REST = {
    "sha256": "0" * 64, "size_bytes": 1, "compressed_bytes": 1, "arch": "vit", "params": 1,
    "macs": 1, "input_shape": [1, 3, 32, 32], "sparsity": None, "int8_budget": None,
    "prune_budget": None, "optimization": "", "torch_version": "2.13.0",
    "python_version": "3.11", "toolchain": None,
}  # fmt: skip


def test_profile_paths_are_one_per_artifact_and_device_that_runs_it():
    raw = yaml.safe_load((REPO / "config.yaml").read_text())
    config = resolve_config(raw)
    paths = plan.profile_paths(config, "tinycnn")
    expected = [a.bench_path(d).replace("/bench/", "/profile/")
                for a, d in plan.benchmarks(config) if a.model == "tinycnn"]  # fmt: skip
    assert paths == expected and len(paths) == len(set(paths)) > 0
    assert plan.profile_page_paths("tinycnn")["markdown"] in plan.profile_pages(config)
    off = {**config, "profile": {"enabled": False}}
    assert plan.profile_paths(off, "tinycnn") == [] and plan.profile_pages(off) == []
