"""A run's report data reduced to per-network results (what the claims read)."""

from __future__ import annotations

import math

import pytest

from harness.experiments import results
from harness.report.data import Curve, Download, ReportData, RunOverhead
from harness.store.aggregates import Histogram, bin_of


def test_size_labels() -> None:
    assert results.size_label(51200) == "50KiB"
    assert results.size_label(327680) == "320KiB"
    assert results.size_label(5 * 1024 * 1024) == "5MiB"
    assert results.size_label(1000) == "1000B"


def test_overhead_fit_exact_line() -> None:
    runs = [RunOverhead("KIST", "base", "r", p, 1.0 * p, 0.0) for p in (1, 2, 5, 10)]
    slope, r2 = results.overhead_fit(runs)
    assert slope == pytest.approx(1.0) and r2 == pytest.approx(1.0)
    assert math.isnan(results.overhead_fit(runs[:2])[0])
    narrow = [RunOverhead("KIST", "base", "r", p, 1.0 * p, 0.0) for p in (1, 2, 3, 2, 1)]
    slope, r2 = results.overhead_fit(narrow)
    assert slope == pytest.approx(1.0) and math.isnan(r2)   # 1-3 sockets: no linearity verdict


def test_from_report_per_arm() -> None:
    k, v = Curve("KIST"), Curve("Vanilla")
    hist = Histogram("kq", {bin_of(1.0): 90, bin_of(20.0): 10})
    data = ReportData(
        title="t", environment={},
        downloads=(Download("KIST", "base", "web0", 327680, 0.1, 1.0, True),
                   Download("KIST", "base", "web0", 327680, 0.2, 2.0, True),
                   Download("KIST", "base", "web0", 327680, 0.2, 9.0, False),
                   Download("Vanilla", "base", "web1", 327680, 0.3, 3.0, True)),
        goodput_Bps={k: [1024.0, 3072.0], v: [2048.0]},
        tor_queue_ms={k: [1.0, 5.0, 20.0, 2.0]},
        kernel_queue_ms={v: hist},
        overhead=tuple(RunOverhead("KIST", "base", "r", p, 2.0 * p, 0.0) for p in (1, 3, 4)),
        interval_ms=10.0,
    )
    out = {r.arm: r for r in results.from_report(data, "s1", condition="high-load")}
    assert set(out) == {"kist", "vanilla"}
    kr = out["kist"]
    assert kr.network == "s1" and kr.condition == "high-load"
    assert kr.samples["ttlb_320KiB"] == [1.0, 2.0]           # the failed one is left out
    assert kr.scalars["goodput_kib_s"] == 2.0
    assert kr.scalars["tor_queue_within_interval"] == 0.75
    assert kr.scalars["overhead_us_per_socket"] == pytest.approx(2.0)
    kq = out["vanilla"].samples["kernel_queue_ms"]
    assert len(kq) == results.HISTOGRAM_POINTS
    assert sorted(kq)[int(0.5 * (len(kq) - 1))] == pytest.approx(1.0, rel=0.05)
