"""Per-minute aggregates: always equal to what the raw records say (exact counts and sums,
histograms equal to binning the raw values), through crashes, rebuilds and read-only opens."""

from __future__ import annotations

import math
import random
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from harness.errors import InputError
from harness.store import aggregates as agg
from harness.store.db import Store, open_store
from harness.store.records import Context, Record
from kist_reference import trace
from kist_reference.replay import replay_run

REAL = Path(__file__).parents[2] / "data" / "real-tor-0.4.9.11-runs.jsonl"
T0 = 1_700_000_000.0
CTXS = [Context("day", fp, "0.4.9.11", "abc", arm) for fp in ("A" * 40, "B" * 40) for arm in ("KIST", "Vanilla")]


def test_decisions_are_what_replay_checks() -> None:
    runs = list(trace.read_records(REAL))
    fields = [agg.run_fields(r) for r in runs]
    assert [f["decisions"] for f in fields] == [replay_run(r).decisions for r in runs]
    assert sum(f["decisions"] for f in fields) == 11129
    assert [f["cells"] for f in fields] == [sum(type(s) in (trace.CellFlush, trace.DestroyFlush) for s in r.steps)
                                            for r in runs]


def _records(rng: random.Random, n: int) -> list[tuple[Context, Record]]:
    """A mix of every aggregated kind over ~10 minutes, plus kinds aggregates ignore."""
    runs = [trace.to_wire(r).split(" ", 1)[1] for r in trace.read_records(REAL)]
    out: list[tuple[Context, Record]] = []
    for i in range(n):
        ctx = rng.choice(CTXS)
        ts = T0 + rng.uniform(0, 600)
        kind = rng.choice(["BW", "KIST_OVERHEAD", "KIST_QTIME", "KIST_KQTIME", "KIST_RUN", "ORCONN"])
        sched = rng.choice(["KIST", "Vanilla"])
        if kind == "BW":
            rec = Record(kind, ts, {"read": 1, "written": rng.choice([0, rng.randint(1, 10**7)])})
        elif kind == "KIST_OVERHEAD":
            sockets = rng.choice([0, rng.randint(1, 60)])
            rec = Record(kind, ts, {"run": i, "sched": sched, "pending": rng.randint(0, 60), "sockets": sockets,
                                    "sock_ns": rng.randint(0, 90000), "run_ns": rng.randint(0, 900000),
                                    "cells": rng.randint(0, 200), "bytes": rng.randint(0, 10**5)})
        elif kind == "KIST_QTIME":
            cells = ",".join(f"2:7:{rng.choice(['-', str(rng.randint(0, 10**8))])}:"
                             f"{rng.choice(['-', str(rng.randint(0, 10**6))])}" for _ in range(rng.randint(0, 30)))
            rec = Record(kind, ts, rng.choice([  # KIST_QTIME's own class, or stem's bare Event (older stores)
                {"run": i, "sched": sched, "t0_ns": 0, "n": cells.count(",") + 1, "cells": cells},
                {"args": [], "kw": {"RUN": str(i), "SCHED": sched, "CELLS": cells}}]))
        elif kind == "KIST_KQTIME":
            rec = Record(kind, ts, {"chan": 3, "t_ns": i, "bytes": rng.randint(1, 10**5),
                                    "sched_ns": rng.choice([None, 0, rng.randint(1, 10**8)]),
                                    "snd_ns": rng.choice([None, 0, rng.randint(1, 10**8)])})
        elif kind == "KIST_RUN":
            raw = rng.choice(runs)
            rec = Record(kind, ts, agg.run_fields(trace.parse_wire(raw)), raw)
        else:
            rec = Record(kind, ts, {"status": "CONNECTED"})
        out.append((ctx, rec))
    return out


def _expected(store: Store) -> tuple[Counter[tuple[str, str, str, int]], dict[tuple[str, str, str, int], float],
                                     Counter[tuple[str, str, str, int]]]:
    """(metric, arm, sched, minute) -> n, total; (metric, arm, sched, bin) -> count: from raw records."""
    n: Counter[tuple[str, str, str, int]] = Counter()
    total: dict[tuple[str, str, str, int], float] = {}
    bins: Counter[tuple[str, str, str, int]] = Counter()

    def count(metric: str, arm: str, sched: str, minute: int, value: float) -> None:
        n[(metric, arm, sched, minute)] += 1
        total[(metric, arm, sched, minute)] = total.get((metric, arm, sched, minute), 0) + value

    for ctx, rec in store.records():
        d: Any = rec.data
        minute = int(rec.ts // 60)
        arm = ctx.arm
        if rec.kind == "BW":
            count("goodput_bytes", arm, "-", minute, d["written"])
            bins[("goodput_Bps", arm, "-", agg.bin_of(d["written"]))] += 1
        elif rec.kind == "KIST_RUN":
            run = trace.parse_wire(rec.raw or "")
            count("kist_runs", arm, run.sched, minute, 1)
            count("decisions", arm, run.sched, minute, replay_run(run).decisions)
            count("cells", arm, run.sched, minute, sum(type(s) in (trace.CellFlush, trace.DestroyFlush)
                                                      for s in run.steps))
            bins[("npend", arm, run.sched, agg.bin_of(run.n_pending))] += 1
        elif rec.kind == "KIST_OVERHEAD":
            s = d["sched"]
            count("overhead_runs", arm, s, minute, d["cells"])
            bins[("pending", arm, s, agg.bin_of(d["pending"]))] += 1
            bins[("run_us", arm, s, agg.bin_of(d["run_ns"] / 1000))] += 1
            if d["sockets"] > 0:
                count("fit_pp", arm, s, minute, d["sockets"] ** 2)
                bins[("sock_us_per_socket", arm, s, agg.bin_of(d["sock_ns"] / 1000 / d["sockets"]))] += 1
        elif rec.kind == "KIST_KQTIME":
            for name, metric in (("sched_ns", "kernel_sched_ms"), ("snd_ns", "kernel_snd_ms")):
                if d[name] is not None:
                    bins[(metric, arm, "-", agg.bin_of(d[name] / 1e6))] += 1
        elif rec.kind == "KIST_QTIME":
            s = d["kw"]["SCHED"] if "kw" in d else d["sched"]
            cells = [c.split(":") for c in (d["kw"]["CELLS"] if "kw" in d else d["cells"]).split(",") if c]
            count("qtime_cells", arm, s, minute, len(cells))
            for c in cells:
                if c[2] != "-":
                    bins[("queue_ms", arm, s, agg.bin_of(int(c[2]) / 1e6))] += 1
    return n, total, bins


def _check(store: Store) -> None:
    n, total, bins = _expected(store)
    assert n and bins
    for metric, arm, sched, minute in n:
        series = store.minute_series(metric, by=(), where=agg.Selection(arm=arm, sched=sched))[()]
        got = {int(ts // 60): (cnt, tot) for ts, cnt, tot in series}
        assert got[minute] == (n[(metric, arm, sched, minute)], total[(metric, arm, sched, minute)])
    for metric, arm, sched, b in bins:
        hist = store.histogram(metric, by=(), where=agg.Selection(arm=arm, sched=sched))[()]
        assert hist.counts[b] == bins[(metric, arm, sched, b)]
        assert hist.n == sum(v for k, v in bins.items() if k[:3] == (metric, arm, sched))


def test_aggregates_equal_the_raw_records(tmp_path: Path) -> None:
    rng = random.Random(7)
    records = _records(rng, 1500)
    with open_store(tmp_path / "s.db") as store:
        for k in range(0, len(records), 200):  # several batches, minutes spanning batches
            store.write_batch(records[k:k + 200])
        _check(store)
        runs = store.totals("kist_runs")
        assert sum(v[0] for v in runs.values()) == store.count("KIST_RUN")
        assert set(store.totals("goodput_bytes", by=("fingerprint",))) == {("A" * 40,), ("B" * 40,)}
        by_both = store.histogram("queue_ms", by=("arm", "sched"))
        assert set(by_both) == {(a, s) for a in ("KIST", "Vanilla") for s in ("KIST", "Vanilla")}
        assert sum(h.n for h in by_both.values()) == sum(h.n for h in store.histogram("queue_ms").values())
        half = store.totals("kist_runs", by=(), where=agg.Selection(since=T0, until=T0 + 300))[()][0]
        assert half == sum(1 for _r in store.records("KIST_RUN", since=T0 // 60 * 60, until=(T0 + 300) // 60 * 60))


def test_records_that_do_not_fit_their_kind_are_stored_but_never_fail_a_batch(tmp_path: Path) -> None:
    odd = [Record("KIST_QTIME", T0, {"run": 1, "sched": "KIST", "cells": "2:7:5000000:x,2:7:abc:-,1:2,2:7:-:-"}),
           Record("KIST_OVERHEAD", T0, {"sched": "KIST", "pending": "many"}),
           Record("KIST_RUN", T0, {"decisions": None, "cells": 1}),
           Record("BW", T0, {"written": "lots"})]
    with open_store(tmp_path / "s.db") as store:
        store.write_batch([(CTXS[0], r) for r in odd])
        assert store.count() == 4
        assert store.histogram("queue_ms", by=())[()].n == 1  # the one readable time
        assert store.totals("qtime_cells", by=()) == {(): (1, 4)}
        assert "overhead_runs" not in {m for (m, *_k) in store.db.execute("SELECT metric FROM agg_counts")}


def test_a_failed_batch_adds_nothing_to_the_aggregates(tmp_path: Path) -> None:
    with open_store(tmp_path / "s.db") as store:
        store.write_batch([(CTXS[0], Record("BW", T0, {"written": 5}))])

        class Boom:
            def __str__(self) -> str:
                raise RuntimeError("disk on fire")

        with pytest.raises(RuntimeError):
            store.write_batch([(CTXS[0], Record("BW", T0, {"written": 7})),
                               (CTXS[0], Record(Boom(), T0, {}))])  # type: ignore[arg-type]
        assert store.totals("goodput_bytes", by=()) == {(): (1, 5)}


def _snapshot(store: Store) -> tuple[list[Any], list[Any]]:
    db = store._aggregates()
    return (db.execute("SELECT * FROM agg_counts ORDER BY 1, 2, 3, 4").fetchall(),
            db.execute("SELECT * FROM agg_bins ORDER BY 1, 2, 3, 4, 5").fetchall())


def test_an_old_store_gets_its_aggregates_rebuilt_and_read_only_computed(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with open_store(path) as store:
        store.write_batch(_records(random.Random(3), 600))
        want = _snapshot(store)
    with sqlite3.connect(path) as db:  # as a store written before aggregates existed
        db.execute("DELETE FROM agg_counts")
        db.execute("DELETE FROM agg_bins")
        db.execute("DELETE FROM meta WHERE key = 'aggregates_version'")
    with open_store(path, readonly=True) as store:
        assert _snapshot(store) == want  # computed in memory
    with open_store(path) as store:
        assert _snapshot(store) == want  # rebuilt in place
        store.rebuild_aggregates()
        assert _snapshot(store) == want  # idempotent
    with open_store(path, readonly=True) as store:
        assert store._aggregates() is store.db


def test_histogram_cdf_and_quantiles() -> None:
    values = [0.0, 1.0, 1.0, 2.0, 3.0, 100.0, 1e-3]
    hist = agg.Histogram("x", Counter(agg.bin_of(v) for v in values))
    xs, ys = hist.cdf()
    assert xs == sorted(xs) and ys[-1] == 1.0 and hist.n == len(hist) == len(values)
    for v in values:
        lo, hi = agg.bin_edges(agg.bin_of(v))
        assert lo <= v < hi or v == lo == hi == 0.0
        assert hi <= max(v * 2 ** (1 / agg.BINS_PER_OCTAVE), 0) * (1 + 1e-12) or v == 0.0
    assert hist.quantile(0.5) == agg.bin_edges(agg.bin_of(1.0))[1]  # the 4th of 7 values
    assert hist.quantile(1.0) == agg.bin_edges(agg.bin_of(100.0))[1]
    assert math.isnan(agg.Histogram("x", {}).quantile(0.5))
    assert hist.merged(hist).counts == {b: 2 * n for b, n in hist.counts.items()}
    assert hist.scaled(1e-3).quantile(1.0) == pytest.approx(hist.quantile(1.0) * 1e-3)
    assert [agg.bin_of(i) for i in range(1, 23)] == sorted(set(agg.bin_of(i) for i in range(1, 23)))


def test_unknown_metric_or_grouping_is_an_input_error(tmp_path: Path) -> None:
    with open_store(tmp_path / "s.db") as store:
        with pytest.raises(InputError, match="no aggregate"):
            store.histogram("nope")
        with pytest.raises(InputError, match="group"):
            store.totals("kist_runs", by=("arm", "colour"))


def test_the_writer_stores_kist_runs_with_their_counts_and_malformed_ones_as_errors(tmp_path: Path) -> None:
    import stem.response

    from harness.control.buffer import EventBuffer
    from harness.control.writer import RawEvent, StoreWriter
    from harness.store.records import Kind

    runs = list(trace.read_records(REAL))
    lines = [f"650 {trace.to_wire(r)}" for r in runs]
    lines[5:5] = ["650 KIST_RUN V=1 RUN=x", lines[0].replace("STEPS=", "STEPS=q:1,"), lines[0][:-30]]
    with open_store(tmp_path / "s.db") as store:
        buf = EventBuffer(10_000)
        writer = StoreWriter(store, buf, batch_max=50, flush_interval=0.01).start()
        for i, line in enumerate(lines):
            buf.put_event(RawEvent(CTXS[0], T0 + i, stem.response.ControlMessage.from_str(line + "\r\n")))
        writer.stop()
        assert writer.failure is None and writer.errors == 3 and store.count(Kind.ERROR) == 3
        assert [r.raw for _c, r in store.records(Kind.ERROR)][0] == "KIST_RUN V=1 RUN=x"
        (n, decisions), = store.totals("decisions", by=()).values()
        assert n == len(runs) and decisions == 11129
        stored = [r.data for _c, r in store.records("KIST_RUN")]
        assert stored[0] == agg.run_fields(runs[0]) and [d["run"] for d in stored] == [r.run for r in runs]
