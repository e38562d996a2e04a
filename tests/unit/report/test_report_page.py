"""The report shows the numbers it was given: quantile tables, overhead slope, the
differential summary; a failed render leaves the previous report in place."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from harness.checks.differential import DiffSummary, DivergentRun
from harness.report import page
from harness.report.data import (
    Download,
    ReportData,
    RunOverhead,
    quantiles,
    us_per_pending_socket,
)


def _data(**kw: object) -> ReportData:
    downloads = tuple(
        Download(arm, "base", "c1", 327680, ttfb, ttfb * 3, True)
        for arm, base in (("KIST", 0.1), ("Vanilla", 0.2))
        for ttfb in (base, base * 2, base * 3, base * 4, base * 5)
    ) + (Download("KIST", "base", "c1", 327680, 9.0, 99.0, False),)
    overhead = tuple(RunOverhead("KIST", "base", "r1", p, 2.0 * p, 40.0) for p in (1, 2, 3, 4))
    defaults: dict[str, object] = dict(title="t", environment={"tor": "0.4.9.11", "kernel": "6.1"},
                                       downloads=downloads, overhead=overhead)
    defaults.update(kw)
    return ReportData(**defaults)  # type: ignore[arg-type]


def test_quantiles_match_hand_computation() -> None:
    q = quantiles([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (q.n, q.median, q.minimum, q.maximum) == (5, 3.0, 1.0, 5.0)
    assert q.q1 == pytest.approx(2.0) and q.q3 == pytest.approx(4.0)
    assert math.isnan(quantiles([]).median)


def test_overhead_slope_is_least_squares_through_origin() -> None:
    assert us_per_pending_socket(_data().overhead) == pytest.approx(2.0)


def test_summary_tables_carry_the_medians_and_skip_failed_downloads(tmp_path: Path) -> None:
    out = page.render(_data(), tmp_path / "rep")
    md = out.markdown.read_text()
    # 5 successful KIST downloads (the failed one is not counted), median TTFB 0.3 s
    assert "| KIST | 5 | 0.3 |" in md
    assert "| Vanilla | 5 | 0.6 |" in md
    assert "2 µs per pending socket here (median over runs; least-squares slope 2 µs; paper: 1.08 µs)" in md
    assert {p.name for p in out.figures} >= {"ttfb_327680.png", "ttlb_327680.png", "pending.png", "overhead.png"}
    for fig in out.figures:
        assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<img src='ttfb_327680.png'" in out.html.read_text()


def test_divergences_are_listed_with_reproducers(tmp_path: Path) -> None:
    div = DivergentRun(7, "relay1", 12, "pop chan 5", "pop chan 9", "stale EWMA key", "div/run7.jsonl")
    out = page.render(_data(diff=DiffSummary(3, 120, (div,), 100, 25)), tmp_path / "rep")
    md = out.markdown.read_text()
    assert "Runs replayed: 3; decisions checked: 120; divergences from the faithful model: 1." in md
    assert "25 of 100 cells (25.0%)" in md
    assert "Run 7 on relay1, decision 12: Tor pop chan 9, model pop chan 5." in md
    assert "class=bad" in out.html.read_text()


def test_failed_render_keeps_the_previous_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "rep"
    page.render(_data(), target)
    before = (target / "summary.md").read_text()

    def boom(*a: object, **k: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(page, "_html", boom)
    with pytest.raises(RuntimeError):
        page.render(_data(title="new"), target)
    assert (target / "summary.md").read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["rep"]  # no temp dir left behind
