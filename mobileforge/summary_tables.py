"""``results/summary.md`` (and its HTML twin for the report): the summary for people.

First the best artifact per model and device, with what a decision needs (path, format, variant,
p50 with its 95 % interval, speedup over fp32, size, accuracy delta, roofline fraction and why it
was chosen), then the peak throughput each roofline is read against, then every row of
``results/summary.csv``. One list of :class:`Section` is rendered twice, as Markdown and as a
self-contained HTML page, so the two never disagree. Torch-free.
"""

from __future__ import annotations

import html
import math
import numbers
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mobileforge.summary import COLUMNS


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)  # paragraphs, Markdown-safe plain text
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    level: int = 2  # heading level: 2 for a page's sections, 3 and 4 nested under them


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return isinstance(value, float) and math.isnan(value)
    except TypeError:
        return False


def fmt_number(value: Any, digits: int = 3) -> str:
    if _missing(value) or value == "":
        return "–"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        value = float(value)
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.{digits}g}"
    return str(value)


def fmt_bytes(value: Any) -> str:
    if _missing(value):
        return "–"
    size = float(value)
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{int(size)} B"


def fmt_fraction(value: Any) -> str:
    return "–" if _missing(value) else f"{100.0 * float(value):.1f} %"


def fmt_p50(row: pd.Series) -> str:
    p50 = row["latency_ms_p50"]
    if _missing(p50):
        return "–"
    text = f"{float(p50):.3g}"
    low, high = row.get("latency_ms_ci_low"), row.get("latency_ms_ci_high")
    if not _missing(low) and not _missing(high):
        text += f" [{float(low):.3g}, {float(high):.3g}]"
    return text


def fmt_ratio(row: pd.Series, name: str) -> str:
    """A paired ratio with its interval, e.g. ``2.41× [2.38, 2.45]``; – where not compared."""
    value, low, high = row.get(name), row.get(f"{name}_low"), row.get(f"{name}_high")
    if _missing(value):
        return "–"
    text = f"{float(value):.3g}×"
    if not _missing(low) and not _missing(high) and (low, high) != (value, value):
        text += f" [{float(low):.3g}, {float(high):.3g}]"
    return text


def _undecided(frame: pd.DataFrame, model: str, device: str) -> str:
    """Why ``model`` on ``device`` has no best artifact."""
    rows = frame[(frame["model"] == model) & (frame["device"] == device)]
    for note in rows["note"].astype(str):
        for part in note.split("; "):
            if part.startswith("paired comparison unreliable"):
                return f"{model} on {device} ({part})"
    if not rows["compared"].astype(bool).any():
        return f"{model} on {device} (no paired comparison finished)"
    return f"{model} on {device} (no compared artifact within the accuracy budget)"


def _peak_text(peak: dict[str, Any], precision: str) -> str:
    entry = peak.get("peak", {}).get(precision)
    return "–" if not entry else f"{entry['gmacs']:.1f} ({entry['kernel']})"


def sections(
    frame: pd.DataFrame,
    peaks: dict[str, dict[str, Any]],
    accuracy_budget: float,
    pages: dict[str, str] | None = None,
    searches: Sequence[dict[str, Any]] = (),
    recovery: dict[str, str] | None = None,
) -> list[Section]:
    """The content of summary.md: best per model x device, each prune search's outcome
    (``searches``: :class:`mobileforge.records.PruneSearch`), the links to each model's profile
    page (``pages``: model -> link, relative to the summary) and recovery figure of its channel
    points (``recovery``, likewise), the peaks, the full table."""
    out = [_best_section(frame, accuracy_budget)]
    out += [search_section(search) for search in searches]
    if pages:
        out.append(pages_section(pages))
    if recovery:
        out.append(recovery_section(recovery))
    if peaks:
        out.append(_peaks_section(peaks))
    out.append(_all_rows_section(frame))
    return out


def _best_section(frame: pd.DataFrame, accuracy_budget: float) -> Section:
    """Best artifact per model and device, how it was decided, and the pairs without one."""
    best = frame[frame["best"].astype(bool)]
    pick = Section(
        "Best artifact per model and device",
        [
            f"The fastest artifact within {accuracy_budget:g} top-1 points of fp32 "
            "(`selection.accuracy_budget`), decided by a paired comparison: the candidates held "
            "loaded side by side and timed in interleaved rounds on the same CPUs, with an A/A "
            "control (one artifact held twice) showing the measurement's own resolution. A "
            "candidate is faster only where the 95 % interval of its latency ratio lies beyond "
            "that resolution; otherwise it ties, and the more accurate wins, then the smaller, "
            "then the unpruned; *why* says which rule decided. Ratios are medians over rounds "
            "[95 % bootstrap interval]: speedup over the fp32 artifact of the same format and "
            "backend, and over what ExecuTorch gives by hand (the faster of the plain .pte fp32 "
            "and int8 programs). p50 in ms with its 95 % interval describes the artifact's own "
            "benchmark; roofline: achieved MAC/s over the peak of its precision on that device.",
        ],
        [
            "model",
            "device",
            "artifact",
            "format",
            "variant",
            "p50 ms [95 % CI]",
            "speedup vs fp32",
            "vs ExecuTorch by hand",
            "size",
            "Δ top-1 (pt)",
            "roofline",
            "why",
        ],
    )
    for _, row in best.iterrows():
        pick.rows.append(
            [
                row["model"],
                row["device"],
                row["artifact"],
                f".{row['format']}",
                row["variant"],
                fmt_p50(row),
                fmt_ratio(row, "speedup"),
                fmt_ratio(row, "vs_executorch"),
                fmt_bytes(row["size_bytes"]),
                fmt_number(row["accuracy_delta"]),
                fmt_fraction(row["roofline_fraction"]),
                row["best_reason"],
            ]
        )
    missing = sorted(
        set(zip(frame["model"], frame["device"], strict=True))
        - set(zip(best["model"], best["device"], strict=True))
    )
    if missing:
        pick.text.append(
            "No best artifact for: "
            + ", ".join(_undecided(frame, model, device) for model, device in missing)
            + "."
        )
    return pick


def search_section(search: dict[str, Any]) -> Section:
    """One model's prune search: every amount tried in order, its verdict from each int8
    artifact's top-1 against fp32, what was left after it, and where the search stopped."""
    chosen = search["chosen"]
    outcome = (
        f"stopped at **{chosen}** (`int8_pruned-{chosen}`), the largest amount within the budget"
        if chosen
        else "no amount tried stayed within the budget"
    )
    table = Section(
        f"Prune search: {search['model']}",
        [
            f"Channel amounts from {search['low']:g} to {search['high']:g} on a grid of "
            f"{search['step']:g}, by bisection, at most {search['max_points']} "
            f"(`prune.amount: search`): an amount is within when every int8 artifact of it is "
            f"within {search['accuracy_budget']:g} top-1 points of its fp32 artifact "
            f"(`selection.accuracy_budget`), and the next amount is then higher, else lower. "
            f"The search {outcome}; it stopped because {search['stopped']}. Each tried amount is "
            "an ordinary variant: its rows are in the tables here.",
        ],
        ["#", "point", "verdict", "Δ top-1 per int8 artifact (pt)", "left to try after it"],
    )
    for number, step in enumerate(search["steps"], start=1):
        deltas = ", ".join(
            f"{_searched_label(entry)} {fmt_number(entry['accuracy_delta'])}"
            for entry in step["artifacts"]
        )
        left = step["interval"]
        verdict = "within" if step["within_budget"] else "over the budget"
        table.rows.append(
            [
                str(number),
                step["point"] + (" (chosen)" if step["point"] == chosen else ""),
                verdict,
                deltas,
                "nothing" if not left else f"{left[0]:g} to {left[1]:g}",
            ]
        )
    return table


def _searched_label(entry: dict[str, Any]) -> str:
    parts = [f".{entry['format']}", entry["backend"], entry.get("engine") or ""]
    return " ".join(part for part in parts if part)


def recovery_section(figures: dict[str, str]) -> Section:
    """Links to each model's figure of how its channel points recovered."""
    return _links_section(
        "How the channel points recovered",
        "Per model, each channel point's top-1 on the held-back part of the train split after "
        "every fine-tune epoch, against the unpruned model's and the target (the accuracy "
        "budget less the room left for int8), with the epoch whose weights were kept and "
        "why the fine-tune stopped",
        figures,
    )


def pages_section(pages: dict[str, str]) -> Section:
    """Links to each model's page of where its artifacts' time goes (mobileforge.profile_page)."""
    return _links_section(
        "Where the time goes, layer by layer",
        "Per model, each artifact's slowest layers on each device side by side, the share "
        "of quantize/dequantize and layout conversions, the per-layer sum against the "
        "benchmark, and what each layer the int8 budget kept in fp32 costs in microseconds",
        pages,
    )


def _links_section(title: str, what: str, links: dict[str, str]) -> Section:
    """A section of one sentence saying what each model's linked page shows, then the links."""
    listed = ", ".join(f"[{model}]({link})" for model, link in links.items())
    return Section(title, [f"{what}: {listed}."])


def _peaks_section(peaks: dict[str, dict[str, Any]]) -> Section:
    """Peak throughput of each host: the roofline's ceiling per precision."""
    limits = Section(
        "Peak throughput of each host (roofline ceiling)",
        [
            "The fastest GEMM kernel of each precision, measured once per run on the "
            "benchmark's CPUs and thread count (`results/peak/<device>.json`); an "
            "artifact's roofline fraction is its MACs / p50 over the peak of its precision.",
        ],
        ["device", "CPU", "threads", "fp32 GMAC/s (kernel)", "int8 GMAC/s (kernel)"],
    )
    for device, peak in sorted(peaks.items()):
        cpu = peak.get("host", {}).get("cpu_model") or "unknown CPU"
        features = peak.get("cpu_features") or []
        limits.rows.append(
            [
                device,
                cpu + (f" ({', '.join(features)})" if features else ""),
                fmt_number(peak.get("threads")),
                _peak_text(peak, "fp32"),
                _peak_text(peak, "int8"),
            ]
        )
    return limits


def _all_rows_section(frame: pd.DataFrame) -> Section:
    """Every row of summary.csv."""
    table = Section(
        "All artifacts",
        ["Every row of `results/summary.csv` (its columns are described in the README)."],
        list(COLUMNS),
    )
    for _, row in frame.iterrows():
        table.rows.append([fmt_number(row[column]) for column in COLUMNS])
    return table


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(parts: Sequence[Section], title: str = "mobileforge summary") -> str:
    lines = [f"# {title}", ""]
    for part in parts:
        lines += [f"{'#' * part.level} {part.title}", ""]
        for paragraph in part.text:
            lines += [paragraph, ""]
        if part.header:
            lines.append("| " + " | ".join(_md_cell(h) for h in part.header) + " |")
            lines.append("|" + "|".join(" --- " for _ in part.header) + "|")
            for row in part.rows:
                lines.append("| " + " | ".join(_md_cell(cell) for cell in row) + " |")
            lines.append("")
    return "\n".join(lines)


_CSS = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin-bottom: 2em; font-size: 0.85em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #eee; }
tr:nth-child(even) td { background: #f8f8f8; }
"""


def _inline(text: str) -> str:
    """HTML of a paragraph: escaped, with `code` spans and *emphasis* of the Markdown kept."""
    escaped = html.escape(text)
    parts = escaped.split("`")
    escaped = "".join(
        f"<code>{part}</code>" if i % 2 else _links(part.replace("*", ""))
        for i, part in enumerate(parts)
    )
    return escaped


_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")


def _links(text: str) -> str:
    """Markdown links ``[text](href)`` of escaped text as HTML anchors."""
    return _LINK.sub(r'<a href="\2">\1</a>', text)


def to_html(parts: Sequence[Section], title: str = "mobileforge summary") -> str:
    body = [f"<h1>{html.escape(title)}</h1>"]
    for part in parts:
        body.append(f"<h{part.level}>{html.escape(part.title)}</h{part.level}>")
        body += [f"<p>{_inline(paragraph)}</p>" for paragraph in part.text]
        if part.header:
            body.append("<table><thead><tr>")
            body += [f"<th>{html.escape(h)}</th>" for h in part.header]
            body.append("</tr></thead><tbody>")
            for row in part.rows:
                cells = "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row)
                body.append(f"<tr>{cells}</tr>")
            body.append("</tbody></table>")
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def write_summaries(
    frame: pd.DataFrame,
    peaks: dict[str, dict[str, Any]],
    accuracy_budget: float,
    csv_path: str | os.PathLike[str],
    markdown_path: str | os.PathLike[str],
    html_path: str | os.PathLike[str],
    pages: dict[str, dict[str, str]] | None = None,
    searches: Sequence[dict[str, Any]] = (),
    recovery: dict[str, str] | None = None,
) -> None:
    """summary.csv, summary.md and the report's summary.html of one summary frame, atomically;
    ``pages`` (model -> {"markdown": path, "html": path}) and the recovery figures
    (``recovery``: model -> path) are linked from both tables."""
    import io

    from mobileforge import files

    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, float_format="%.6g")
    files.write_bytes_atomic(csv_path, buffer.getvalue().encode())
    for path, form, render in (
        (markdown_path, "markdown", to_markdown),
        (html_path, "html", to_html),
    ):
        # Each table links the page of its own form, relative to where that table is.
        links = {
            model: os.path.relpath(forms[form], os.path.dirname(os.fspath(path)) or ".")
            for model, forms in (pages or {}).items()
        }
        here = os.path.dirname(os.fspath(path)) or "."
        figures = {model: os.path.relpath(p, here) for model, p in (recovery or {}).items()}
        parts = sections(frame, peaks, accuracy_budget, links, searches, figures)
        files.write_bytes_atomic(path, render(parts).encode())
