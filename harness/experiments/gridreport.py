"""The grid's report page: the claims table across networks, the banded figure, every cell.

``kist-harness run paper`` writes it at the end of a grid and ``kist-harness report GRID_DIR``
redraws it from the cells' ``done.json`` and stores without running anything. Written to a
temp directory and renamed into place (harness.outdir), like a run's report.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.errors import InputError
from harness.experiments import claims
from harness.experiments.claims import NetworkResult, Verdict
from harness.outdir import replace_dir
from harness.report.page import CLAIMS_CSS

DONE = "done.json"
FIGURE = "ttlb_320KiB_base.png"


@dataclass(frozen=True)
class DoneCell:
    """What a finished cell's done.json says."""

    seed: int
    condition: str
    store: Path
    divergences: int
    decisions: int
    seconds: float

    @property
    def network(self) -> str:
        return f"net{self.seed}"


def finished_cells(grid_dir: Path) -> list[DoneCell]:
    """Every finished cell under a grid directory (``net<seed>/<condition>/done.json``)."""
    out = []
    for done in sorted(grid_dir.glob(f"net*/*/{DONE}")):
        try:
            rec = json.loads(done.read_text())
            out.append(DoneCell(int(rec["seed"]), str(rec["condition"]), Path(rec["store"]),
                                int(rec["divergences"]), int(rec["decisions"]), float(rec.get("seconds", 0.0))))
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{done}: not a done.json the grid wrote ({exc}); delete that cell's directory "
                             "to have `kist-harness run paper` run it again.") from None
    return out


def is_grid(path: Path) -> bool:
    return path.is_dir() and any(path.glob(f"net*/*/{DONE}"))


def banded_figure(path: Path, results: Sequence[NetworkResult]) -> Path | None:
    """TTLB of 320 KiB downloads under the base condition, one banded CDF per arm."""
    from harness.experiments.plot import cdf_band_figure

    arms = []
    for arm, label in ((claims.KIST, "KIST"), (claims.VANILLA, "Vanilla")):
        nets = [list(r.samples.get("ttlb_320KiB", ())) for r in results if r.arm == arm and r.condition == "base"]
        if any(nets):
            arms.append((label, nets))
    if not arms:
        return None
    cdf_band_figure(str(path), arms, xlabel="time to last byte, 320 KiB (s)",
                    title="base condition: mean over networks, 95 % band")
    return path


def _networks(cells: Sequence[DoneCell]) -> dict[str, int]:
    per: dict[str, set[str]] = {}
    for c in cells:
        per.setdefault(c.condition, set()).add(c.network)
    return {cond: len(nets) for cond, nets in per.items()}


def render_grid(grid_dir: Path, cells: Sequence[DoneCell], results: Sequence[NetworkResult],
                verdicts: Sequence[Verdict]) -> Path:
    """Write GRID_DIR/report/{index.html, summary.md, figure}; return the report directory."""
    out = (grid_dir / "report").resolve()
    tmp = Path(tempfile.mkdtemp(prefix=".report.", dir=grid_dir))
    try:
        fig = banded_figure(tmp / FIGURE, results)
        k = _networks(cells)
        ks = ", ".join(f"{cond}: k={n}" for cond, n in sorted(k.items()))
        decisions = sum(c.decisions for c in cells)
        divergences = sum(c.divergences for c in cells)
        head = (f"{len(cells)} cells ({ks}); differential over every cell: {decisions:,} decisions, "
                f"{divergences} divergences.")
        rows = [(c.network, c.condition, f"{c.decisions:,}", str(c.divergences), f"{c.seconds:.0f}",
                 os.path.relpath(c.store.parent / "report" / "index.html", out)) for c in cells]
        md = ["# The paper's grid: claims across sampled networks", "", head, "",
              "## The paper's claims (95 % intervals across networks)", "", claims.markdown_table(verdicts).rstrip()]
        if fig is not None:
            md += ["", "## 320 KiB time to last byte, base condition", "", f"![banded CDF]({fig.name})"]
        md += ["", "## Cells", "", "| network | condition | decisions | divergences | seconds | report |",
               "|---|---|---|---|---|---|"]
        md += [f"| {a} | {b} | {c} | {d} | {e} | [report]({f}) |" for a, b, c, d, e, f in rows]
        (tmp / "summary.md").write_text("\n".join(md) + "\n")
        e = html.escape
        page = ["<!doctype html><html><head><meta charset='utf-8'><title>kist-harness: the paper's grid</title>",
                "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto;}"
                "table{border-collapse:collapse;font-size:0.85em;margin:0.5em 0 1.5em;}"
                "td,th{border:1px solid #ccc;padding:2px 8px;}" + CLAIMS_CSS + "</style></head><body>",
                "<h1>The paper's grid: claims across sampled networks</h1>", f"<p>{e(head)}</p>",
                "<h2>The paper's claims (95 % intervals across networks)</h2>", claims.html_table(verdicts)]
        if fig is not None:
            page += ["<h2>320 KiB time to last byte, base condition</h2>", f"<img src='{e(fig.name)}' alt='banded CDF'>"]
        page.append("<h2>Cells</h2><table><tr><th>network</th><th>condition</th><th>decisions</th>"
                    "<th>divergences</th><th>seconds</th><th>report</th></tr>")
        page += [f"<tr><td>{e(a)}</td><td>{e(b)}</td><td>{e(c)}</td><td>{e(d)}</td><td>{e(x)}</td>"
                 f"<td><a href='{e(f)}'>report</a></td></tr>" for a, b, c, d, x, f in rows]
        page.append("</table></body></html>")
        (tmp / "index.html").write_text("\n".join(page) + "\n")
        replace_dir(tmp, out, "kist-harness run paper", "the grid's report")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


# load(cell, store) -> that cell's results
Load = Callable[[DoneCell, Path], list[NetworkResult]]


def report_grid(grid_dir: Path, load: Load, cells: Sequence[DoneCell] | None = None
                ) -> tuple[Path, list[Verdict]]:
    """The verdicts across networks and the grid's page, from what the cells stored:
    ``cells`` (the grid's own), or every finished cell under grid_dir (`kist-harness report
    GRID_DIR`). Also writes claims.md / claims.html and the figure beside the cells."""
    cells = list(cells) if cells is not None else finished_cells(grid_dir)
    if not cells:
        raise InputError(f"{grid_dir}: no finished cell (net<seed>/<condition>/done.json); run "
                         f"`kist-harness run paper --out {grid_dir}` first.")
    results = [r for c in cells for r in load(c, c.store)]
    verdicts = claims.judge_all(results)
    (grid_dir / "claims.md").write_text(claims.markdown_table(verdicts))
    (grid_dir / "claims.html").write_text(claims.html_table(verdicts))
    report = render_grid(grid_dir, cells, results, verdicts)
    if (report / FIGURE).is_file():
        shutil.copyfile(report / FIGURE, grid_dir / FIGURE)
    return report, verdicts
