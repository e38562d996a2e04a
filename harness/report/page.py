"""Render a ReportData as PNG figures, an HTML page and a Markdown summary.

Written to a temp directory and renamed into place, so a failed render never leaves a
half-written report where a good one was.
"""

from __future__ import annotations

import html
import math
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.report import figures
from harness.report.model import (
    PAPER_MEDIAN_PENDING,
    PAPER_US_PER_PENDING_SOCKET,
    ReportData,
    curve_label,
    downloads_by_size,
    group,
    quantiles,
    us_per_pending_socket,
)


@dataclass(frozen=True)
class Rendered:
    directory: Path
    html: Path
    markdown: Path
    figures: tuple[Path, ...]


def _size_name(size: int) -> str:
    if size >= 1 << 20 and size % (1 << 20) == 0:
        return f"{size >> 20} MiB"
    if size >= 1 << 10 and size % (1 << 10) == 0:
        return f"{size >> 10} KiB"
    return f"{size} B"


def _fmt(x: float, unit: str = "") -> str:
    if math.isnan(x):
        return "–"
    if abs(x) >= 100:
        return f"{x:,.0f}{unit}"
    return f"{x:.3g}{unit}"


@dataclass(frozen=True)
class _Panel:
    title: str
    figure: Path | None
    rows: tuple[tuple[str, ...], ...]  # label, n, median, q1, q3, p90, max
    unit: str


def _panel(title: str, fig: Path | None, curves: Mapping[str, Sequence[float]], unit: str) -> _Panel:
    rows = []
    for label in sorted(curves):
        q = quantiles(curves[label])
        rows.append((label, str(q.n), _fmt(q.median), _fmt(q.q1), _fmt(q.q3), _fmt(q.p90), _fmt(q.maximum)))
    return _Panel(title, fig, tuple(rows), unit)


def render(data: ReportData, outdir: Path, *, interval_ms: float | None = None) -> Rendered:
    """Draw every panel the data supports and write index.html + summary.md into outdir."""
    outdir = outdir.resolve()
    outdir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", dir=outdir.parent))
    try:
        panels = _draw(data, tmp, interval_ms)
        md = _markdown(data, panels)
        (tmp / "summary.md").write_text(md)
        (tmp / "index.html").write_text(_html(data, panels))
        if outdir.exists():
            shutil.rmtree(outdir)
        tmp.rename(outdir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    figs = tuple(outdir / p.figure.name for p in panels if p.figure is not None)
    return Rendered(outdir, outdir / "index.html", outdir / "summary.md", figs)


def _draw(data: ReportData, d: Path, interval_ms: float | None) -> list[_Panel]:
    panels: list[_Panel] = []
    for metric, name in (("ttfb", "time to first byte"), ("ttlb", "time to last byte")):
        for size, curves in sorted(downloads_by_size(data, metric).items()):
            fig = figures.cdf_figure(d / f"{metric}_{size}.png", curves, title=f"{name}, {_size_name(size)} downloads",
                                     xlabel="download time (s)")
            panels.append(_panel(f"{name.capitalize()}, {_size_name(size)}", fig, curves, "s"))
    if data.goodput_Bps:
        curves = {k: [v / 1e6 for v in vals] for k, vals in data.goodput_Bps.items()}
        fig = figures.cdf_figure(d / "goodput.png", curves, title="relay goodput (per relay-second)",
                                 xlabel="goodput (MB/s)")
        panels.append(_panel("Relay goodput", fig, curves, "MB/s"))
    if data.tor_queue_ms:
        fig = figures.cdf_figure(d / "tor_queue.png", dict(data.tor_queue_ms), title="Tor queue time per cell",
                                 xlabel="time in Tor (ms)", logx=True, marker_x=interval_ms,
                                 marker_label="scheduler interval" if interval_ms else "")
        panels.append(_panel("Tor queue time per cell", fig, dict(data.tor_queue_ms), "ms"))
    if data.kernel_queue_ms:
        fig = figures.cdf_figure(d / "kernel_queue.png", dict(data.kernel_queue_ms),
                                 title="kernel queue time (write to departure)", xlabel="time in kernel (ms)", logx=True)
        panels.append(_panel("Kernel queue time", fig, dict(data.kernel_queue_ms), "ms"))
    if data.overhead:
        pending = group([(curve_label(o.arm, o.variant), float(o.pending)) for o in data.overhead])
        fig = figures.cdf_figure(d / "pending.png", pending, title="pending sockets per scheduler run",
                                 xlabel="pending sockets", marker_x=PAPER_MEDIAN_PENDING,
                                 marker_label="paper median (live relay)")
        panels.append(_panel("Pending sockets per run", fig, pending, ""))
        points: dict[str, list[tuple[float, float]]] = {}
        for o in data.overhead:
            points.setdefault(curve_label(o.arm, o.variant), []).append((float(o.pending), o.tcpinfo_us))
        fig = figures.scatter_figure(d / "overhead.png", points, title="TCP-info collection time per run",
                                     xlabel="pending sockets", ylabel="time (µs)", slope=PAPER_US_PER_PENDING_SOCKET,
                                     slope_label="paper: 1.08 µs per socket")
        per_socket = group([(curve_label(o.arm, o.variant), o.tcpinfo_us / o.pending) for o in data.overhead if o.pending])
        panels.append(_panel("Scheduler overhead per pending socket", fig, per_socket, "µs"))
    return panels


def _diff_lines(data: ReportData) -> list[str]:
    diff = data.diff
    if diff is None:
        return ["No differential check in this report (no KIST run records in the store)."]
    lines = [
        f"Runs replayed: {diff.runs:,}; decisions checked: {diff.decisions:,}; "
        f"divergences from the faithful model: {len(diff.divergences)}.",
    ]
    if diff.ideal_cells:
        lines.append(f"Distance from the paper's ideal algorithm: {diff.ideal_cells_better_waiting:,} of "
                     f"{diff.ideal_cells:,} cells ({diff.ideal_share:.1%}) were sent while a better-priority "
                     "circuit waited on another channel.")
    for v in diff.invariant_violations:
        lines.append(f"Invariant violated: {v}")
    for dv in diff.divergences[:20]:
        lines.append(f"Run {dv.run} on {dv.relay}, decision {dv.index}: Tor {dv.actual}, model {dv.expected}. "
                     f"{dv.explanation} Reproducer: {dv.reproducer}")
    return lines


def _overhead_line(data: ReportData) -> str | None:
    if not data.overhead:
        return None
    slope = us_per_pending_socket(data.overhead)
    per_socket = quantiles([o.tcpinfo_us / o.pending for o in data.overhead if o.pending]).median
    med = quantiles([float(o.pending) for o in data.overhead]).median
    return (f"TCP-info collection costs {_fmt(per_socket)} µs per pending socket here (median over runs; "
            f"least-squares slope {_fmt(slope)} µs; paper: {PAPER_US_PER_PENDING_SOCKET} µs); median "
            f"{_fmt(med)} pending sockets per run (paper: {PAPER_MEDIAN_PENDING}).")


_HEAD = ("curve", "n", "median", "q1", "q3", "p90", "max")


def _markdown(data: ReportData, panels: list[_Panel]) -> str:
    out = [f"# {data.title}", "", "## Differential check", ""]
    out += [f"- {line}" for line in _diff_lines(data)]
    overhead = _overhead_line(data)
    if overhead:
        out += ["", overhead]
    for p in panels:
        out += ["", f"## {p.title}" + (f" ({p.unit})" if p.unit else ""), ""]
        if p.figure is not None:
            out += [f"![{p.title}]({p.figure.name})", ""]
        out += ["| " + " | ".join(_HEAD) + " |", "|" + "---|" * len(_HEAD)]
        out += ["| " + " | ".join(r) + " |" for r in p.rows]
    out += ["", "## Environment", ""]
    out += [f"- {k}: {v}" for k, v in sorted(data.environment.items())]
    if data.notes:
        out += ["", "## Notes", ""] + [f"- {n}" for n in data.notes]
    return "\n".join(out) + "\n"


def _html(data: ReportData, panels: list[_Panel]) -> str:
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(data.title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;}"
             "table{border-collapse:collapse;font-size:0.85em;margin:0.5em 0 1.5em;}"
             "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right;}"
             "td:first-child,th:first-child{text-align:left;} .panel{display:inline-block;"
             "vertical-align:top;margin:0 1em 1em 0;} .bad{color:#b00;}</style></head><body>",
             f"<h1>{e(data.title)}</h1>", "<h2>Differential check</h2><ul>"]
    bad = bool(data.diff and data.diff.divergences)
    parts += [f"<li{' class=bad' if bad else ''}>{e(line)}</li>" for line in _diff_lines(data)]
    parts.append("</ul>")
    overhead = _overhead_line(data)
    if overhead:
        parts.append(f"<p>{e(overhead)}</p>")
    for p in panels:
        parts.append(f"<div class=panel><h3>{e(p.title)}{' (' + e(p.unit) + ')' if p.unit else ''}</h3>")
        if p.figure is not None:
            parts.append(f"<img src='{e(p.figure.name)}' alt='{e(p.title)}'>")
        parts.append("<table><tr>" + "".join(f"<th>{h}</th>" for h in _HEAD) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in p.rows]
        parts.append("</table></div>")
    parts.append("<h2>Environment</h2><table>")
    parts += [f"<tr><td>{e(k)}</td><td>{e(v)}</td></tr>" for k, v in sorted(data.environment.items())]
    parts.append("</table>")
    if data.notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in data.notes) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)
