"""Render a ReportData as PNG figures, an HTML page and a Markdown summary.

Written to a temp directory and renamed into place, so a failed render never leaves a
half-written report where a good one was.
"""

from __future__ import annotations

import html
import math
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from harness.experiments import claims as paper_claims
from harness.outdir import replace_dir
from harness.report import coverage_section, figures
from harness.report.data import (
    PAPER_MEDIAN_PENDING,
    PAPER_US_PER_PENDING_SOCKET,
    Curve,
    Distribution,
    ReportData,
    arm_rows,
    downloads_by_size,
    overhead_slope,
    pending,
    pooled,
    quantiles,
    scaled,
    us_per_socket,
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


def _panel(title: str, fig: Path | None, curves: Mapping[str, Distribution], unit: str) -> _Panel:
    rows = []
    for label, values in curves.items():
        q = quantiles(values)
        rows.append((label, str(q.n), _fmt(q.median), _fmt(q.q1), _fmt(q.q3), _fmt(q.p90), _fmt(q.maximum)))
    return _Panel(title, fig, tuple(rows), unit)


@dataclass(frozen=True)
class ClaimsSection:
    """The claims table a report shows: the verdicts and a sentence on where they come from."""

    verdicts: tuple[paper_claims.Verdict, ...]
    note: str


def single_network_claims(data: ReportData) -> ClaimsSection:
    """The paper's claims judged on this one store. One network gives k = 1 per condition, so
    no claim can get an interval (every row is inconclusive or no data); the row still shows
    the network's numbers, and the note says where verdicts come from."""
    from harness.experiments.results import from_report

    verdicts = tuple(paper_claims.judge_all(from_report(data, "this-run")))
    return ClaimsSection(verdicts, "One network (k = 1): no claim can be judged at 95 %; the numbers are this "
                         "run's. Verdicts across independently sampled networks come from `kist-harness run "
                         "paper` (its report: OUT/report/index.html).")


def render(data: ReportData, outdir: Path, *, interval_ms: float | None = None,
           claims: ClaimsSection | None = None) -> Rendered:
    """Draw every panel the data supports and write index.html + summary.md into outdir.

    ``claims``: the paper's claims table to show (the grid passes its verdicts across
    networks); by default the claims are judged on this store alone (single_network_claims)."""
    outdir = outdir.resolve()
    outdir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", dir=outdir.parent))
    try:
        panels = _draw(data, tmp, interval_ms if interval_ms is not None else data.interval_ms)
        section = claims if claims is not None else single_network_claims(data)
        md = _markdown(data, panels, section)
        (tmp / "summary.md").write_text(md)
        (tmp / "index.html").write_text(_html(data, panels, section))
        replace_dir(tmp, outdir, "kist-harness report")  # only an earlier report is replaced
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    figs = tuple(outdir / p.figure.name for p in panels if p.figure is not None)
    return Rendered(outdir, outdir / "index.html", outdir / "summary.md", figs)


def _draw(data: ReportData, d: Path, interval_ms: float | None) -> list[_Panel]:
    panels: list[_Panel] = []
    names = data.variant_names()
    styles: figures.Styles = {c.label: (c.arm, names.index(c.variant)) for c in data.curves()}

    def cdf(name: str, title: str, curves: Mapping[str, Distribution], panel: str, unit: str,
            **kw: object) -> None:
        fig = figures.cdf_figure(d / name, curves, title=title, styles=styles, **kw)  # type: ignore[arg-type]
        panels.append(_panel(panel, fig, curves, unit))

    for metric, name in (("ttfb", "time to first byte"), ("ttlb", "time to last byte")):
        for size, curves in sorted(downloads_by_size(data, metric).items()):
            cdf(f"{metric}_{size}.png", f"{name}, {_size_name(size)} downloads", data.ordered(curves),
                f"{name.capitalize()}, {_size_name(size)}", "s", xlabel="download time (s)")
    if data.goodput_Bps:
        mbps = data.ordered({k: scaled(vals, 1e-6) for k, vals in data.goodput_Bps.items()})
        cdf("goodput.png", "relay goodput (per relay-second)", mbps, "Relay goodput", "MB/s",
            xlabel="goodput (MB/s)")
    if data.tor_queue_ms:
        cdf("tor_queue.png", "Tor queue time per cell", data.ordered(data.tor_queue_ms), "Tor queue time per cell",
            "ms", xlabel="time in Tor (ms)", logx=True, marker_x=interval_ms,
            marker_label="scheduler interval" if interval_ms else "")
    if data.kernel_queue_ms:
        cdf("kernel_queue.png", "kernel queue time (end of write to device, sampled writes)",
            data.ordered(data.kernel_queue_ms), "Kernel queue time", "ms", xlabel="time in kernel (ms)", logx=True)
    if data.overhead:
        cdf("pending.png", "pending sockets per scheduler run", data.ordered(pending(data)),
            "Pending sockets per run", "", xlabel="pending sockets", marker_x=PAPER_MEDIAN_PENDING,
            marker_label="paper median (live relay)")
        points: dict[str, list[tuple[float, float]]] = {c.label: [] for c in data.curves()}
        for o in data.overhead:
            points[Curve(o.arm, o.variant).label].append((float(o.pending), o.tcpinfo_us))
        fig = figures.scatter_figure(d / "overhead.png", points, title="TCP-info collection time per run",
                                     xlabel="pending sockets", ylabel="time (µs)", slope=PAPER_US_PER_PENDING_SOCKET,
                                     slope_label="paper: 1.08 µs per socket", styles=styles)
        panels.append(_panel("Scheduler overhead per pending socket", fig, data.ordered(us_per_socket(data)), "µs"))
    return panels


def _variant_tables(data: ReportData) -> list[tuple[str, tuple[str, ...], list[tuple[str, ...]]]]:
    """(title, header, rows): the conditions the run went through, then each arm within each."""
    out: list[tuple[str, tuple[str, ...], list[tuple[str, ...]]]] = []
    if data.variants:
        rows: list[tuple[str, ...]] = [
            (v.name, v.phase.describe or "–",
             *(("–", "–") if v.phase.skipped else (_fmt(v.phase.duration_s or math.nan),
                                                   _fmt(v.phase.period_s or math.nan))),
             str(v.unattributed), v.phase.skipped or "ran") for v in data.variants]
        out.append(("Variants", ("variant", "condition", "traffic (s)", "arm period (s)",
                                 "downloads across a switch (not attributed)", "status"), rows))
    arm = arm_rows(data)
    if arm and (data.downloads or data.goodput_Bps):
        sizes = sorted({s for r in arm for s in r.ttlb_median_s})
        head = ("variant", "arm", "downloads ok", "failed",
                *(f"TTLB {_size_name(s)} median (s)" for s in sizes),
                "goodput median (MB/s)", "Tor queue median (ms)", "kernel queue median (ms)",
                "pending sockets median")
        out.append(("KIST vs Vanilla per variant", head, [
            (r.variant, r.arm, str(r.downloads_ok), str(r.downloads_failed),
             *(_fmt(r.ttlb_median_s[s]) for s in sizes), _fmt(r.goodput_median_MBps),
             _fmt(r.tor_queue_median_ms), _fmt(r.kernel_queue_median_ms), _fmt(r.pending_median)) for r in arm]))
    return out


def _diff_lines(data: ReportData) -> list[str]:
    diff = data.diff
    if diff is None:
        return ["No differential check in this report (no KIST run records in the store)."]
    lines = [
        f"Runs replayed: {diff.runs:,}; decisions checked: {diff.decisions:,}; "
        f"divergences from {diff.judged_by}: {len(diff.divergences)}.",
    ]
    if diff.ideal_cells:
        lines.append(f"Distance from the paper's ideal algorithm: {diff.ideal_cells_better_waiting:,} of "
                     f"{diff.ideal_cells:,} cells ({diff.ideal_share:.1%}) were sent while a better-priority "
                     "circuit waited on another channel.")
    if diff.coverage is not None:
        lines += diff.coverage.head()
    for v in diff.invariant_violations:
        lines.append(f"Invariant violated: {v}")
    for dv in diff.divergences[:20]:
        lines.append(f"Run {dv.run} on {dv.relay}, decision {dv.index}: Tor {dv.actual}, model {dv.expected}. "
                     f"{dv.explanation} Reproducer: {dv.reproducer}")
    return lines


def _overhead_line(data: ReportData) -> str | None:
    if not data.overhead:
        return None
    slope = overhead_slope(data)
    per_socket = quantiles(pooled(list(us_per_socket(data).values()))).median
    med = quantiles(pooled(list(pending(data).values()))).median
    return (f"TCP-info collection costs {_fmt(per_socket)} µs per pending socket here (median over runs; "
            f"least-squares slope {_fmt(slope)} µs; paper: {PAPER_US_PER_PENDING_SOCKET} µs); median "
            f"{_fmt(med)} pending sockets per run (paper: {PAPER_MEDIAN_PENDING}).")


# the claims table: words, left-aligned; the verdict cell coloured by its outcome
CLAIMS_CSS = ("table.claims td{text-align:left;vertical-align:top;max-width:28em;}"
              "tr.reproduced td:nth-child(2){background:#d8f0d8;} tr.refuted td:nth-child(2){background:#f4d4d4;}"
              "tr.inconclusive td:nth-child(2){background:#f4ecd0;} tr.no-data td:nth-child(2){color:#888;}")

_HEAD = ("curve", "n", "median", "q1", "q3", "p90", "max")


def _markdown(data: ReportData, panels: list[_Panel], claims: ClaimsSection) -> str:
    out = [f"# {data.title}", "", "## Differential check", ""]
    out += [f"- {line}" for line in _diff_lines(data)]
    out += coverage_section.markdown(data.diff)
    out += ["", "## The paper's claims", "", claims.note, "", paper_claims.markdown_table(claims.verdicts).rstrip()]
    overhead = _overhead_line(data)
    if overhead:
        out += ["", overhead]
    for title, head, rows in _variant_tables(data):
        out += ["", f"## {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(r) + " |" for r in rows]
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


def _html(data: ReportData, panels: list[_Panel], claims: ClaimsSection) -> str:
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(data.title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto;}"
             "table{border-collapse:collapse;font-size:0.85em;margin:0.5em 0 1.5em;}"
             "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right;}"
             "td:first-child,th:first-child{text-align:left;} .panel{display:inline-block;"
             "vertical-align:top;margin:0 1em 1em 0;} .bad{color:#b00;} table.words td:last-child{text-align:left;}"
             + CLAIMS_CSS +
             "</style></head><body>",
             f"<h1>{e(data.title)}</h1>", "<h2>Differential check</h2><ul>"]
    bad = bool(data.diff and data.diff.divergences)
    parts += [f"<li{' class=bad' if bad else ''}>{e(line)}</li>" for line in _diff_lines(data)]
    parts.append("</ul>")
    parts += coverage_section.html(data.diff)
    parts += ["<h2>The paper's claims</h2>", f"<p>{e(claims.note)}</p>", paper_claims.html_table(claims.verdicts)]
    overhead = _overhead_line(data)
    if overhead:
        parts.append(f"<p>{e(overhead)}</p>")
    for title, head, rows in _variant_tables(data):
        words = " class=words" if head[-1] == "status" else ""  # a sentence, not a number: left-aligned
        parts.append(f"<h2>{e(title)}</h2><table{words}><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows]
        parts.append("</table>")
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
