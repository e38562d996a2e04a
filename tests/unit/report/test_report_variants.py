"""Per-variant numbers: a store with a base and a loss phase (and a skipped one) splits into
per-variant curves and tables whose counts and medians match SQL over the same store."""

from __future__ import annotations

import sqlite3
import statistics
from pathlib import Path

import pytest

from harness.report import page
from harness.report.data import Curve, arm_rows
from harness.report.read import read_store
from harness.store.db import Store
from harness.store.records import Context, Record

RUN = "default-20260101T000000"
PHASES = {RUN: "base", f"{RUN}.load2": "load2"}
SIZE = 327680


def _download(arm: str, run_id: str, i: int, ttlb: float, ok: bool = True) -> tuple[Context, Record]:
    data = {"client": "webk", "profile": "web", "size": SIZE, "start": 1000.0 + i, "ttfb_s": ttlb / 4,
            "ttlb_s": ttlb if ok else None, "received": SIZE if ok else 0, "outcome": "ok" if ok else "failed"}
    return Context(run_id, fingerprint="webk", arm=arm), Record("download", 1000.0 + i, data)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "store.sqlite"
    items: list[tuple[Context, Record]] = []
    for run_id, variant in PHASES.items():
        scale = 1.0 if variant == "base" else 3.0
        items.append((Context(run_id, fingerprint="harness"), Record("variant", 1.0, {
            "variant": variant, "describe": "the scenario as written" if variant == "base" else "load x2",
            "duration_s": 60.0, "period_s": 15.0, "skipped": ""})))
        for i, ttlb in enumerate((1.0, 2.0, 3.0)):
            items.append(_download("KIST", run_id, i, ttlb * scale))
            items.append(_download("Vanilla", run_id, 10 + i, (ttlb + 1) * scale))
        items.append(_download("Vanilla", run_id, 20, 5.0, ok=False))
        items.append(_download("straddle", run_id, 21, 9.0))
        for arm, written in (("KIST", 1e6), ("Vanilla", 2e6), ("-", 7e6)):
            items.append((Context(run_id, fingerprint="R1", arm=arm), Record("BW", 1.0, {"written": written * scale})))
        for arm, snd in (("KIST", 2_000_000), ("Vanilla", 4_000_000), ("KIST", None), ("straddle", 9)):
            items.append((Context(run_id, fingerprint="R1", arm=arm), Record("KIST_KQTIME", 1.0, {
                "chan": 5, "t_ns": 1, "bytes": 4000, "sched_ns": None, "snd_ns": snd if snd is None else int(snd * scale)})))
        for pend in (2, 4, 6):
            items.append((Context(run_id, fingerprint="R1", arm="KIST"), Record("KIST_OVERHEAD", 1.0, {
                "sched": "KIST", "sockets": pend * int(scale), "sock_ns": 1000 * pend, "run_ns": 50_000})))
    items.append((Context(f"{RUN}.loss1", fingerprint="harness"), Record("variant", 2.0, {
        "variant": "loss1", "describe": "loss 1% on client links", "duration_s": 60.0, "period_s": 30.0, "skipped":
        "variant loss1 (loss 1% on client links) skipped: the local backend cannot shape client links"})))
    with Store(path) as st:
        st.write_batch(items)
    return path


def test_every_record_lands_in_its_variant(store: Path) -> None:
    data = read_store(store)
    assert [v.name for v in data.variants] == ["base", "load2", "loss1"]
    assert [(c.arm, c.variant) for c in data.curves()] == [
        ("KIST", "base"), ("Vanilla", "base"), ("KIST", "load2"), ("Vanilla", "load2")]
    db = sqlite3.connect(store)
    for run_id, variant in PHASES.items():
        for arm in ("KIST", "Vanilla"):
            n = db.execute("SELECT count(*) FROM records_full WHERE kind='download' AND run_id=? AND arm=?",
                           (run_id, arm)).fetchone()[0]
            assert sum(1 for d in data.downloads if (d.arm, d.variant) == (arm, variant)) == n
            written = [w for (w,) in db.execute(
                "SELECT json_extract(data, '$.written') FROM records_full WHERE kind='BW' AND run_id=? AND arm=?",
                (run_id, arm))]
            assert list(data.goodput_Bps[Curve(arm, variant)]) == written
            snd = [v / 1e6 for (v,) in db.execute(
                "SELECT json_extract(data, '$.snd_ns') FROM records_full WHERE kind='KIST_KQTIME' AND run_id=? "
                "AND arm=? AND json_extract(data, '$.snd_ns') IS NOT NULL", (run_id, arm))]
            assert list(data.kernel_queue_ms[Curve(arm, variant)]) == snd and snd
    assert {v.name: v.unattributed for v in data.variants} == {"base": 1, "load2": 1, "loss1": 0}
    assert any("loss1" in n and "skipped" in n for n in data.notes)
    assert "base: 1 download ran across an arm switch (period 15 s) and are not attributed" in "\n".join(data.notes)


def test_arm_rows_are_medians_of_the_store(store: Path) -> None:
    rows = {(r.variant, r.arm): r for r in arm_rows(read_store(store))}
    db = sqlite3.connect(store)
    for run_id, variant in PHASES.items():
        ttlb = [t for (t,) in db.execute(
            "SELECT json_extract(data, '$.ttlb_s') FROM records_full WHERE kind='download' AND run_id=? "
            "AND arm='Vanilla' AND json_extract(data, '$.outcome')='ok'", (run_id,))]
        row = rows[(variant, "Vanilla")]
        assert (row.downloads_ok, row.downloads_failed) == (len(ttlb), 1)
        assert row.ttlb_median_s[SIZE] == pytest.approx(statistics.median(ttlb))
    assert rows[("load2", "KIST")].pending_median == pytest.approx(12.0)
    assert rows[("base", "KIST")].goodput_median_MBps == pytest.approx(1.0)
    assert rows[("load2", "Vanilla")].kernel_queue_median_ms == pytest.approx(12.0)


def test_report_has_per_variant_curves_and_tables(store: Path, tmp_path: Path) -> None:
    out = page.render(read_store(store), tmp_path / "rep")
    md = out.markdown.read_text()
    assert "| load2 | load x2 | 60 | 15 | 1 | ran |" in md
    assert "| loss1 | loss 1% on client links | – | – | 0 | variant loss1" in md
    section = md.split("## Time to last byte, 320 KiB", 1)[1].split("\n## ", 1)[0]
    labels = [line.split(" | ")[0].lstrip("| ") for line in section.splitlines() if line.startswith("| ")][1:]
    assert labels == ["KIST", "Vanilla", "KIST load2", "Vanilla load2"]
    assert "| KIST load2 | 3 | 6 |" in section  # ttlb 3, 6, 9 s
    per_variant = md.split("## KIST vs Vanilla per variant", 1)[1].split("\n## ", 1)[0]
    assert "| load2 | Vanilla | 3 | 1 | 9 |" in per_variant


def test_a_large_store_reads_its_aggregates_and_agrees_with_the_records(store: Path, tmp_path: Path) -> None:
    """Past the raw-record limit the report reads per-minute histograms: same curves and counts,
    quantiles at most one bin (4.4 %) above the exact ones, the overhead slope exact."""
    from harness.report.data import overhead_slope, pending, quantiles
    from harness.store.aggregates import Histogram

    raw = read_store(store)
    agg = read_store(store, raw_records_limit=0)
    assert any("per-minute histograms" in n for n in agg.notes) and not any("histograms" in n for n in raw.notes)
    for field_name in ("goodput_Bps", "kernel_queue_ms"):
        exact, binned = getattr(raw, field_name), getattr(agg, field_name)
        assert set(exact) == set(binned) and exact
        for curve, values in exact.items():
            hist = binned[curve]
            assert isinstance(hist, Histogram) and len(hist) == len(values)
            q_exact, q_binned = quantiles(values), quantiles(hist)
            assert q_exact.median <= q_binned.median <= q_exact.median * 1.045
    assert {c: len(v) for c, v in pending(raw).items()} == {c: len(v) for c, v in pending(agg).items()}
    assert overhead_slope(agg) == pytest.approx(overhead_slope(raw))
    out = page.render(agg, tmp_path / "report")
    assert (out.directory / "goodput.png").is_file() and "Relay goodput" in out.markdown.read_text()
