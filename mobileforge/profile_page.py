"""A model's profile page (``results/report/profile/<model>.md`` and its HTML twin): where each
artifact's time goes, layer by layer, side by side, and what each fp32 fallback costs.

Read from records only (pure: records in, sections out): the artifacts' profiles
(:class:`mobileforge.records.Profile`, one per artifact and device), their sidecars (which
layers the int8 budget kept in fp32) and the int8 sensitivity rankings
(``results/<model>/sensitivity/*.json``, :mod:`mobileforge.quantize.sensitivity`). Per device:
one overview row per artifact, then each artifact's slowest layers with their kind
(quantize/dequantize and layout conversions as such), and for an int8 artifact the layers kept
in fp32 with their time there and, where another int8 artifact of the model on the same device
runs that layer in int8, its time there: the difference is what the fallback costs.

Torch-free: the page job imports no torch.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mobileforge import layout
from mobileforge.summary_tables import Section, to_html, to_markdown

#: Layers listed per artifact and device; the rest are summed in one line.
TOP = 10
#: Most damaging layers listed per int8 quantizer in the sensitivity section.
TOP_SENSITIVE = 5
QDQ = ("quantize", "dequantize")
#: Order of variants on the page: fp32, the int8 recipes, then prune points by name.
_VARIANT_ORDER = ("fp32", "int8", layout.DYNAMIC)


@dataclass(frozen=True)
class _Artifact:
    """One profiled artifact: its profile on one device and its sidecar."""

    profile: Mapping[str, Any]
    sidecar: Mapping[str, Any]

    @property
    def label(self) -> str:
        """How the page names it: ``.pte int8 (xnnpack)``, ``.ptl int8 (x86, cpu)``."""
        sidecar = self.sidecar
        where = ", ".join(part for part in (sidecar.get("engine"), sidecar["backend"]) if part)
        return f".{sidecar['format']} {sidecar['variant']} ({where})"

    @property
    def fp32_layers(self) -> list[str]:
        return list(self.sidecar.get("fp32_layers") or [])

    @property
    def pruned(self) -> bool:
        return self.sidecar.get("prune") is not None or "pruned" in self.sidecar["variant"]


def _order(sidecar: Mapping[str, Any]) -> tuple[Any, ...]:
    variant = sidecar["variant"]
    rank = _VARIANT_ORDER.index(variant) if variant in _VARIANT_ORDER else len(_VARIANT_ORDER)
    fmt = layout.FORMATS.index(sidecar["format"]) if sidecar["format"] in layout.FORMATS else 9
    return (fmt, rank, variant, sidecar.get("engine") or "", sidecar["backend"])


# -- numbers as the page writes them -----------------------------------------------------------


def _us(ms: float | None) -> str:
    """Milliseconds as microseconds, to about three significant digits."""
    if ms is None:
        return "–"
    us = 1000.0 * ms
    if abs(us) >= 100:
        return f"{us:.0f}"
    return f"{us:.1f}" if abs(us) >= 10 else f"{us:.2f}"


def _ms(ms: float | None) -> str:
    return "–" if ms is None else f"{ms:.3g}"


def _percent(share: float | None) -> str:
    return "–" if share is None else f"{100.0 * share:.1f} %"


def _gmacs(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"


def _signed_us(ms: float) -> str:
    text = _us(ms)
    return text if text.startswith("-") else f"+{text}"


# -- what the profile says -----------------------------------------------------------------------


def kind_share(profile: Mapping[str, Any], kinds: Sequence[str]) -> tuple[float, int]:
    """The share of the per-layer time spent in layers of ``kinds``, and how many there are."""
    chosen = [layer for layer in profile["layers"] if layer["kind"] in kinds]
    return sum(layer["share"] for layer in chosen), len(chosen)


#: Operand types XNNPACK writes into an operator's name: int8 (``Convolution (NHWC, QC8)``,
#: ``Max Pooling (NHWC, S8)``, ``Fully Connected (NC, QD8, F32, QC8W)``: dynamic int8) or float.
_INT8_NAME = re.compile(r"\b(X8|S8|U8|QS8|QU8|QC8|QC8W|QD8|QC4W)\b")
_FLOAT_NAME = re.compile(r"\b(F32|F16)\b")
#: Lite-interpreter ops whose int8 form is a ``quantized::`` op: by their ``aten::`` name they
#: run in float. Other ``aten::`` ops (pooling, activations) run on int8 tensors as well.
_FLOAT_ATEN = re.compile(r"^aten::(_?convolution|conv\w*|linear|matmul|mm|bmm|addmm|baddbmm)\b")


def runs_in_float(layer: Mapping[str, Any]) -> bool:
    """Whether a compute layer's name says it runs in floating point: an XNNPACK operator of
    float operands only, or a lite-interpreter convolution, linear or matrix product that is not
    ``quantized::``. Names that do not say (``Mean (ND)``, ``aten::max_pool2d``) are not
    counted."""
    name = layer["name"]
    if layer["kind"] != "compute" or _INT8_NAME.search(name):
        return False
    return bool(_FLOAT_NAME.search(name) or _FLOAT_ATEN.match(name))


def float_compute(profile: Mapping[str, Any]) -> tuple[float, float, list[str]]:
    """Time (ms) and share of the compute layers of ``profile`` that run in float, and their
    names, slowest first."""
    chosen = [layer for layer in profile["layers"] if runs_in_float(layer)]
    return (
        sum(layer["median_ms"] for layer in chosen),
        sum(layer["share"] for layer in chosen),
        [layer["name"] for layer in chosen],
    )


def _module_key(name: str) -> str:
    # torch.export names modules ``L__self___features_0`` where the model says ``features.0``:
    # both are compared with the prefix gone and every separator the same.
    name = re.sub(r"^(L__self___|L\['self'\]\.|self\.)", "", name)
    return re.sub(r"[^0-9A-Za-z]+", "_", name).strip("_")


def module_time(profile: Mapping[str, Any], module: str) -> tuple[float, int] | None:
    """The time per run of the layers that came from ``module`` (or a module inside it) in
    ``profile``, and how many layers that is; None when no layer maps back to it."""
    key = _module_key(module)
    found = [
        layer
        for layer in profile["layers"]
        if layer["module"]
        and ((other := _module_key(layer["module"])) == key or other.startswith(key + "_"))
    ]
    if not found:
        return None
    return sum(layer["median_ms"] for layer in found), len(found)


@dataclass(frozen=True)
class Fallback:
    """What one layer kept in fp32 costs in one int8 artifact on one device."""

    layer: str
    here_ms: float | None  # its time in the artifact that keeps it in fp32
    int8_ms: float | None  # its time where another artifact runs it in int8
    int8_in: str | None  # that artifact's label
    fp32_ms: float | None  # its time in the fp32 artifact of the same format
    note: str  # why a time is missing, or what the reference differs in

    @property
    def cost_ms(self) -> float | None:
        if self.here_ms is None or self.int8_ms is None:
            return None
        return self.here_ms - self.int8_ms


def fallbacks(artifact: _Artifact, others: Sequence[_Artifact]) -> list[Fallback]:
    """Each layer ``artifact`` kept in fp32, with its time there and in int8 elsewhere.

    The int8 time comes from another int8 artifact of the model profiled on the same device
    that did not keep the layer in fp32: one of the same format first (same runtime), unpruned
    before pruned (a pruned layer is smaller), then the other format, named in the note.
    """
    same_device = [
        other for other in others if other is not artifact and other.profile["unavailable"] is None
    ]
    int8 = [
        other
        for other in same_device
        if other.sidecar["variant"] != "fp32" and other.sidecar.get("fp32_layers") is not None
    ]
    int8.sort(
        key=lambda other: (
            other.sidecar["format"] != artifact.sidecar["format"],
            other.pruned,
            _order(other.sidecar),
        )
    )
    fp32 = [
        other
        for other in same_device
        if other.sidecar["variant"] == "fp32"
        and other.sidecar["format"] == artifact.sidecar["format"]
    ]
    found = []
    for layer in artifact.fp32_layers:
        here = module_time(artifact.profile, layer)
        notes = []
        if here is None:
            notes.append(f"no layer of this profile maps back to module `{layer}`")
        reference = None
        for other in int8:
            if layer in other.fp32_layers:
                continue
            if (time := module_time(other.profile, layer)) is not None:
                reference = (other, time)
                break
        if reference is None:
            notes.append(
                "no other int8 artifact profiled on this device runs it in int8 with a layer "
                "mapped back to it"
            )
        else:
            other = reference[0]
            if other.sidecar["format"] != artifact.sidecar["format"]:
                notes.append(f"int8 time from the other format ({other.label})")
            elif other.pruned:
                notes.append(f"int8 time from a pruned artifact ({other.label})")
        fp32_time = next(
            (t for other in fp32 if (t := module_time(other.profile, layer)) is not None), None
        )
        found.append(
            Fallback(
                layer=layer,
                here_ms=here[0] if here else None,
                int8_ms=reference[1][0] if reference else None,
                int8_in=reference[0].label if reference else None,
                fp32_ms=fp32_time[0] if fp32_time else None,
                note="; ".join(notes),
            )
        )
    return found


# -- the int8 sensitivity -------------------------------------------------------------------------


def sensitivity_of(
    sidecar: Mapping[str, Any], sensitivities: Sequence[Mapping[str, Any]]
) -> Mapping[str, Any] | None:
    """The ranking the int8 budget of ``sidecar``'s artifact read: same format and quantizer
    (a .ptl's engine, a .pte's backend), its own variant's, else ``int8``'s (prune points
    that prune the int8 weights reuse its calibration)."""
    quantizer = sidecar.get("engine") or sidecar["backend"]
    mine = [
        s for s in sensitivities if s["format"] == sidecar["format"] and s["quantizer"] == quantizer
    ]
    for variant in (sidecar["variant"], "int8"):
        for record in mine:
            if record["variant"] == variant:
                return record
    return None


def _sensitivity_section(
    sensitivities: Sequence[Mapping[str, Any]], kept: Mapping[tuple[str, str, str], set[str]]
) -> Section:
    part = Section(
        "int8 sensitivity",
        [
            f"The {TOP_SENSITIVE} layers whose int8 alone damages the logits most, per "
            "calibration (quantizer and variant): SQNR of the logits with only that layer "
            "int8 (lower: more damage) and the share of images whose top-1 class is unchanged. "
            "*kept in fp32* names the artifacts whose accuracy budget kept the layer in fp32.",
        ],
        ["calibration", "rank", "layer", "type", "SQNR dB", "top-1 unchanged", "kept in fp32"],
    )
    order = sorted(sensitivities, key=lambda s: (s["format"], s["quantizer"], s["variant"]))
    for record in order:
        name = f".{record['format']} {record['quantizer']} {record['variant']}"
        layers = kept.get((record["format"], record["quantizer"], record["variant"]), set())
        for layer in record["layers"][:TOP_SENSITIVE]:
            part.rows.append(
                [
                    name,
                    str(layer.get("rank", "–")),
                    layer["layer"],
                    str(layer.get("type", "–")),
                    f"{layer['sqnr_db']:.1f}",
                    f"{layer['top1_agreement']:.1f} %",
                    "yes" if layer["layer"] in layers else "",
                ]
            )
    if not order:
        part.text.append("No int8 sensitivity was computed for this model.")
    return part


# -- the page ----------------------------------------------------------------------------------


def _device_title(profile: Mapping[str, Any]) -> str:
    kind = "this machine" if profile["device_kind"] == "host" else "a phone over adb"
    return f"{profile['device']} ({kind})"


def _overview(device: str, artifacts: Sequence[_Artifact], level: int) -> Section:
    part = Section(
        f"{device}: every artifact side by side",
        [],
        [
            "artifact",
            "benchmark p50 ms",
            "per-layer sum ms",
            "coverage",
            "q/dq share",
            "layout share",
            "slowest layer (share)",
            "kept in fp32",
        ],
        level=level,
    )
    for artifact in artifacts:
        profile = artifact.profile
        if profile["unavailable"] is not None:
            continue
        qdq, _ = kind_share(profile, QDQ)
        moves, _ = kind_share(profile, ("layout",))
        top = profile["layers"][0] if profile["layers"] else None
        part.rows.append(
            [
                artifact.label,
                _ms(profile["benchmark_p50_ms"]),
                _ms(profile["layers_ms"]),
                _percent(profile["coverage"]),
                _percent(qdq),
                _percent(moves),
                f"{top['name']} ({_percent(top['share'])})" if top else "–",
                "–" if artifact.sidecar["variant"] == "fp32" else str(len(artifact.fp32_layers)),
            ]
        )
    return part


def _artifact_sections(
    artifact: _Artifact,
    others: Sequence[_Artifact],
    sensitivities: Sequence[Mapping[str, Any]],
    level: int,
) -> list[Section]:
    profile = artifact.profile
    threads = f", {_count(profile['threads'], 'thread')}" if profile["threads"] else ""
    text = [
        f"`{profile['artifact']}` on {profile['device']}: {profile['method']}, median of "
        f"{profile['runs']} runs after {profile['warmup']} warm-up{threads}.",
        _agreement(profile),
        _kinds_line(profile),
    ]
    if artifact.sidecar["variant"] != "fp32":
        text.append(_float_line(profile))
    text += [f"Profile warning: {warning}" for warning in profile["warnings"]]
    layers = profile["layers"]
    part = Section(
        f"{artifact.label} on {profile['device']}",
        text,
        ["#", "layer", "kind", "module", "calls", "µs", "share", "GMAC/s"],
        level=level,
    )
    for index, layer in enumerate(layers[:TOP], start=1):
        part.rows.append(
            [
                str(index),
                layer["name"],
                layer["kind"],
                layer["module"] or "–",
                str(layer["calls"]),
                _us(layer["median_ms"]),
                _percent(layer["share"]),
                _gmacs(layer["gmacs_per_s"]),
            ]
        )
    rest = layers[TOP:]
    if rest:
        part.text.append(
            f"The table lists the {TOP} slowest of {len(layers)} layers; the other "
            f"{len(rest)} take {_us(sum(x['median_ms'] for x in rest))} µs "
            f"({_percent(sum(x['share'] for x in rest))})."
        )
    out = [part]
    if artifact.sidecar["variant"] != "fp32":
        out.append(_fallback_section(artifact, others, sensitivities, level + 1))
    return out


def _agreement(profile: Mapping[str, Any]) -> str:
    # The profile's own sentence carries the numbers (mobileforge.profile.agreement).
    verdict = {True: "agrees", False: "does not agree", None: "not checked"}[profile["agrees"]]
    text = f"Per-layer sum against the benchmark: {verdict} ({profile['agreement'].strip()})."
    if profile["outside_ms"] is not None and profile["end_to_end_ms"] is not None:
        text += (
            f" The profiled inference took {_ms(profile['end_to_end_ms'])} ms end to end, "
            f"{_ms(profile['outside_ms'])} ms of it outside operators."
        )
    return text


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _kinds_line(profile: Mapping[str, Any]) -> str:
    qdq, qdq_count = kind_share(profile, QDQ)
    moves, move_count = kind_share(profile, ("layout",))
    return (
        f"Quantize/dequantize: {_percent(qdq)} of the per-layer time "
        f"({_count(qdq_count, 'layer')}); layout conversions: {_percent(moves)} "
        f"({_count(move_count, 'layer')})."
    )


def _float_line(profile: Mapping[str, Any]) -> str:
    ms, share, names = float_compute(profile)
    if not names:
        return "No compute layer of this int8 artifact says by its name that it runs in float."
    shown = ", ".join(f"`{name}`" for name in names[:3]) + (", ..." if len(names) > 3 else "")
    return (
        f"Float compute in this int8 artifact: {_us(ms)} µs ({_percent(share)} of the "
        f"per-layer time) in {_count(len(names), 'layer')} whose name says float ({shown}): "
        "the layers kept in fp32 and the operators the int8 recipe leaves in float, together."
    )


def _fallback_section(
    artifact: _Artifact,
    others: Sequence[_Artifact],
    sensitivities: Sequence[Mapping[str, Any]],
    level: int,
) -> Section:
    title = f"{artifact.label} on {artifact.profile['device']}: layers kept in fp32"
    kept = artifact.fp32_layers
    if not kept:
        return Section(
            title, ["The int8 accuracy budget kept no layer of this artifact in fp32."],
            level=level,
        )  # fmt: skip
    ranking = sensitivity_of(artifact.sidecar, sensitivities)
    ranks = {layer["layer"]: layer for layer in (ranking or {}).get("layers", [])}
    part = Section(
        title,
        [
            f"{_count(len(kept), 'layer')} kept in fp32 by the accuracy budget. *here*: its time "
            "in this artifact (every profiled layer that maps back to its module); "
            "*int8*: its time where another artifact profiled on this device runs it in int8; "
            "*fallback cost* = here − int8, what keeping it in fp32 costs per inference. "
            "*fp32 artifact*: its time in the fp32 artifact of this format."
        ],
        [
            "layer",
            "sensitivity rank (SQNR dB)",
            "here µs",
            "int8 µs",
            "int8 in",
            "fallback cost µs",
            "fp32 artifact µs",
            "note",
        ],
        level=level,
    )
    if ranking is None:
        part.text.append("No sensitivity ranking of this artifact's calibration was found.")
    total = 0.0
    counted = 0
    for fallback in fallbacks(artifact, others):
        rank = ranks.get(fallback.layer)
        cost = fallback.cost_ms
        if cost is not None:
            total += cost
            counted += 1
        part.rows.append(
            [
                fallback.layer,
                f"{rank['rank']} ({rank['sqnr_db']:.1f})" if rank else "–",
                _us(fallback.here_ms),
                _us(fallback.int8_ms),
                fallback.int8_in or "–",
                "–" if cost is None else _signed_us(cost),
                _us(fallback.fp32_ms),
                fallback.note or "",
            ]
        )
    if counted:
        part.text.append(
            f"Together the {_count(counted, 'fallback')} priced here cost {_signed_us(total)} µs "
            "per inference."
        )
    if counted < len(kept):
        ms, _, names = float_compute(artifact.profile)
        part.text.append(
            f"{len(kept) - counted} of {len(kept)} cannot be priced one by one (the note says "
            f"why). Their float kernels are part of the {_us(ms)} µs of float compute in this "
            f"artifact ({_count(len(names), 'layer')}, with the operators the int8 recipe "
            "leaves in float); the quantize/dequantize around them is part of its q/dq share."
        )
    return part


def _unavailable_lines(artifacts: Sequence[_Artifact]) -> list[str]:
    by_reason: dict[str, list[str]] = {}
    for artifact in artifacts:
        if (reason := artifact.profile["unavailable"]) is not None:
            by_reason.setdefault(reason, []).append(artifact.label)
    return [f"No profile of {', '.join(labels)}: {reason}" for reason, labels in by_reason.items()]


def sections(
    model: str,
    profiles: Sequence[Mapping[str, Any]],
    sidecars: Sequence[Mapping[str, Any]],
    sensitivities: Sequence[Mapping[str, Any]],
) -> list[Section]:
    """The page of ``model``: its int8 sensitivity, then per device each artifact's layers.

    ``profiles`` are :class:`~mobileforge.records.Profile` records, ``sidecars`` the
    artifacts' :class:`~mobileforge.records.ArtifactSidecar` (matched by ``artifact`` path),
    ``sensitivities`` the model's sensitivity rankings. A profile whose artifact has no
    sidecar raises ``KeyError`` naming it.
    """
    by_path = {sidecar["artifact"]: sidecar for sidecar in sidecars}
    missing = sorted({p["artifact"] for p in profiles} - by_path.keys())
    if missing:
        raise KeyError(f"profiles of artifacts without a sidecar among the inputs: {missing}")
    kept = {
        (s["format"], s.get("engine") or s["backend"], v): set(s.get("fp32_layers") or [])
        for s in sidecars
        if (v := s["variant"]) != "fp32"
    }
    out = [
        Section(
            "How to read this page",
            [
                "Per device, every artifact of the model side by side, then each artifact's "
                f"{TOP} slowest layers: the runtime's operator or delegated block, its *kind* "
                "(compute, quantize and dequantize, layout conversions such as permutes and "
                "copies between memory formats, a delegate's call, other), the model's module "
                "it came from where the runtime's debug handles map back, its median time per "
                "inference, its share of the per-layer sum, and achieved GMAC/s where its MACs "
                "are known. *coverage* is the per-layer sum over the benchmark's p50: near "
                "100 % the layers explain the latency; the rest ran outside operators "
                "(scheduling, input copies). An int8 artifact then lists the layers its "
                "accuracy budget kept in fp32 and what each costs in microseconds.",
            ],
        ),
        _sensitivity_section(sensitivities, kept),
    ]
    devices: dict[str, list[_Artifact]] = {}
    for profile in profiles:
        artifact = _Artifact(profile, by_path[profile["artifact"]])
        devices.setdefault(profile["device"], []).append(artifact)
    for device in sorted(devices):
        artifacts = sorted(devices[device], key=lambda a: _order(a.sidecar))
        head = Section(_device_title(artifacts[0].profile), _unavailable_lines(artifacts))
        out.append(head)
        if all(a.profile["unavailable"] is not None for a in artifacts):
            continue
        out.append(_overview(device, artifacts, level=3))
        for artifact in artifacts:
            if artifact.profile["unavailable"] is None:
                out += _artifact_sections(artifact, artifacts, sensitivities, level=3)
    if not devices:
        out.append(Section("No profiles", ["No artifact of this model was profiled."]))
    return out


def title(model: str) -> str:
    return f"{model}: where each artifact's time goes"


def render(
    model: str,
    profiles: Sequence[Mapping[str, Any]],
    sidecars: Sequence[Mapping[str, Any]],
    sensitivities: Sequence[Mapping[str, Any]],
) -> tuple[str, str]:
    """The page as Markdown and as HTML (the same sections)."""
    parts = sections(model, profiles, sidecars, sensitivities)
    return to_markdown(parts, title(model)), to_html(parts, title(model))


def write(
    model: str,
    profiles: Sequence[Mapping[str, Any]],
    sidecars: Sequence[Mapping[str, Any]],
    sensitivities: Sequence[Mapping[str, Any]],
    markdown_path: str | os.PathLike[str],
    html_path: str | os.PathLike[str],
) -> None:
    """Both forms of the page, atomically."""
    from mobileforge import files

    markdown, page = render(model, profiles, sidecars, sensitivities)
    files.write_bytes_atomic(markdown_path, markdown.encode())
    files.write_bytes_atomic(html_path, page.encode())
