"""The claims table in the reports: the grid's page (from real stores of synthetic downloads,
through `kist-harness report GRID_DIR`), `run paper`'s markdown, and a single run's page."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from harness.cli import main
from harness.experiments import claims, grid, gridreport
from harness.experiments.claims import KIST, VANILLA, NetworkResult
from harness.report import page
from harness.report.data import Download, ReportData
from harness.store.db import open_store
from harness.store.records import Context, Kind, Record

SIZE = 320 * 1024
# KIST's gain on 320 KiB downloads grows with load (the paper's Fig. 3a-c): seconds
GAIN = {"low-load": 0.0, "base": 0.1, "high-load": 0.4}


def _store(path: Path, seed: int, condition: str) -> Path:
    """A cell's store as the main job writes it: one download record per download, its arm
    in the context. Vanilla's TTLB ~ 1 s (+ the network's own offset); KIST's lower by GAIN."""
    rng = random.Random(seed * 31 + len(condition))
    net_offset = 0.2 * seed
    path.parent.mkdir(parents=True, exist_ok=True)
    with open_store(path) as s:
        items = []
        for i in range(40):
            for arm in ("KIST", "Vanilla"):
                ttlb = 1.0 + net_offset + rng.gauss(0, 0.02) - (GAIN[condition] if arm == "KIST" else 0.0)
                items.append((Context(f"phase-{condition}", f"client{i % 4}", arm=arm),
                              Record(Kind.DOWNLOAD, 1e9 + i, {"client": f"c{i % 4}", "profile": "web", "size": SIZE,
                                                             "start": 1e9 + i, "ttfb_s": ttlb / 4, "ttlb_s": ttlb,
                                                             "received": SIZE, "outcome": "ok"})))
        s.write_batch(items)
    return path


def _grid_dir(root: Path, networks: int) -> Path:
    for seed in range(1, networks + 1):
        for cond in GAIN:
            cell = root / f"net{seed}" / cond
            store = _store(cell / "run" / "store.sqlite", seed, cond)
            (cell / grid.DONE).write_text(json.dumps({"seed": seed, "condition": cond, "store": str(store),
                                                      "divergences": 0, "decisions": 1000, "seconds": 120}))
    return root


def test_report_of_a_grid_dir_shows_verdicts_with_intervals(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    g = _grid_dir(tmp_path / "paper", 5)
    assert main(["report", str(g)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| claim | verdict (95 %) |")         # the markdown table, in the terminal
    html = (g / "report" / "index.html").read_text()
    md = (g / "report" / "summary.md").read_text()
    rows = {line.split(" | ")[0].lstrip("| "): line for line in md.splitlines() if line.startswith("| ")}
    load_row = rows["KIST is no worse than Vanilla, and better for low-volume downloads as load rises (Fig. 3a-c)"]
    assert "**reproduced**" in load_row and "k=5" in load_row and "[" in load_row
    assert "low-load, base, high-load" in load_row
    kq = rows["Kernel queue time is lower with KIST (sec. 4.3, Fig. 3e/4e)"]
    assert "**no data**" in kq                                   # no KIST_KQTIME in these stores
    assert '<tr class="reproduced"><td>KIST is no worse' in html and '<table class="claims">' in html
    assert "15 cells (base: k=5, high-load: k=5, low-load: k=5)" in md and "15,000 decisions, 0 divergences" in md
    assert (g / "report" / gridreport.FIGURE).read_bytes()[:4] == b"\x89PNG"
    assert "../net1/base/run/report/index.html" in md             # each cell's own report
    assert (g / "claims.md").read_text() == out.split("report: ")[0]


def test_too_few_networks_are_inconclusive_not_a_crash(tmp_path: Path) -> None:
    g = _grid_dir(tmp_path / "paper", 1)
    report, verdicts = gridreport.report_grid(g, grid.store_loader)
    by = {v.claim: v for v in verdicts}
    assert by["load"].outcome is claims.Outcome.INCONCLUSIVE and "k=1, no interval" in by["load"].numbers
    assert "inconclusive" in (report / "summary.md").read_text()


def test_a_grid_dir_without_finished_cells_is_an_input_error(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "paper" / "net1" / "base").mkdir(parents=True)
    (tmp_path / "paper" / "net1" / "base" / grid.DONE).write_text("{not json")
    assert main(["report", str(tmp_path / "paper")]) == 2
    err = capsys.readouterr().err
    assert "not a done.json the grid wrote" in err and "Traceback" not in err


def test_run_grid_writes_the_report_page_and_markdown(tmp_path: Path) -> None:
    def run_one(cell: grid.Cell, scenario: Path, run_dir: Path) -> tuple[Path, int, int]:
        return _store(run_dir / "store.sqlite", cell.seed, cell.condition), 0, 10

    cfg = grid.GridConfig(out=tmp_path / "g", networks=3, conditions=("low-load", "base", "high-load"))
    res = grid.run_grid(cfg, run_one, grid.store_loader, say=lambda m: None)
    assert res.report == (tmp_path / "g" / "report").resolve()
    assert res.table is not None and "| claim | verdict (95 %)" in res.table.read_text()
    assert "KIST is no worse" in (res.report / "index.html").read_text()


def _one_run() -> ReportData:
    downloads = tuple(Download(arm, "base", "c1", SIZE, 0.1, t, True)
                      for arm, base in (("KIST", 1.0), ("Vanilla", 1.2)) for t in (base, base + 0.1, base + 0.2))
    return ReportData(title="one run", environment={}, downloads=downloads)


def test_a_single_run_report_has_the_claims_table_and_says_k_is_1(tmp_path: Path) -> None:
    out = page.render(_one_run(), tmp_path / "rep")
    md, html = out.markdown.read_text(), out.html.read_text()
    assert "## The paper's claims" in md and "One network (k = 1)" in md
    assert "| claim | verdict (95 %) |" in md and "kist-harness run paper" in md
    assert '<table class="claims">' in html and "no data" in html


def test_render_shows_the_verdicts_it_is_given(tmp_path: Path) -> None:
    results = [NetworkResult(f"n{i}", "base", arm, scalars={"goodput_kib_s": 100.0 + i + (5 if arm == KIST else 0)})
               for i in range(5) for arm in (KIST, VANILLA)]
    section = page.ClaimsSection(tuple(claims.judge_all(results)), "five synthetic networks")
    md = page.render(_one_run(), tmp_path / "rep", claims=section).markdown.read_text()
    goodput = next(line for line in md.splitlines() if line.startswith("| Relay goodput"))
    assert "**reproduced**" in goodput and "base: 5 [5, 5] (k=5)" in goodput
    assert "five synthetic networks" in md
