"""Tor SIGKILLed and restarted while a collector records it under traffic.

Goal: committed records lost 0; one gap per kill, each with start, end and cause, covering
the kill; no silence in the relay's once-a-second BW events that no gap explains; after
the last restart the collection goes on, and the collector's own count matches the store.
"""

from __future__ import annotations

import time

from harness.faults.collecting import Running, gaps_of, stored_of
from harness.faults.common import Figure, Lab, Ledger, heartbeat_holes, kill_and_restart


def run(lab: Lab, kills: int = 10, up_s: float = 4.0, down_s: float = 1.5) -> Figure:
    fig = Figure(f"tor SIGKILLed and restarted x{kills} under traffic")
    store = lab.work / "tor-kill.db"
    run_id = "tor-kill"
    ledger = Ledger(store)
    pid = lab.node.pid
    assert pid is not None
    windows: list[tuple[float, float]] = []
    t0 = time.monotonic()
    with Running(lab, store, run_id) as r:
        if not r.wait_connected(0):
            fig.problems.append(f"the collector never connected: {r.error}")
            return fig
        for i in range(kills):
            time.sleep(up_s)
            ledger.sample()
            pid, killed, restarted = kill_and_restart(pid, down_s)
            windows.append((killed, restarted))
            if not r.wait_connected(i + 1):
                fig.problems.append(f"no reconnect after kill {i + 1} within 60 s ({r.error})")
                break
        time.sleep(up_s)
        ledger.sample()
    seconds = time.monotonic() - t0
    p = r.collector.progress
    gaps = gaps_of(store, run_id)
    spans = [(g["start"], g["end"]) for g in gaps]
    complete = [g for g in gaps if {"start", "end", "seconds", "reason"} <= g.keys() and g["reason"]]
    covered = sum(any(s <= k + 1.0 and e >= k for s, e in spans) for k, _r in windows)
    holes = heartbeat_holes(store, run_id, spans)
    lost = ledger.lost()
    in_store = stored_of(store, run_id)
    kist_runs = _count(store, run_id, "KIST_RUN")
    missing_runs = _missing_run_numbers(store, run_id)
    fig.values.update(kills=len(windows), committed_lost=lost, gaps=len(gaps), gaps_with_start_end_cause=len(complete),
                      kills_covered_by_a_gap=covered, unexplained_silences=len(holes), kist_runs=kist_runs,
                      run_numbers_missing=missing_runs,
                      stored=in_store, collector_stored=p.stored, shed=p.shed, seconds=f"{seconds:.0f}",
                      gap_s=("{:.1f}-{:.1f}".format(min(g["seconds"] for g in gaps), max(g["seconds"] for g in gaps)))
                      if gaps else "-",
                      causes=",".join(sorted({g["reason"].split(" (")[0] for g in gaps})) or "-")
    if r.error is not None:
        fig.problems.append(f"the collector stopped: {r.error}")
    if lost:
        fig.problems.append(f"{lost} committed records lost")
    if len(gaps) != len(windows) or len(complete) != len(gaps):
        fig.problems.append(f"{len(gaps)} gaps ({len(complete)} complete) for {len(windows)} kills")
    if covered != len(windows):
        fig.problems.append(f"{len(windows) - covered} kills without a gap covering them")
    if holes:
        fig.problems.append(f"silences no gap explains: {holes[:3]}")
    if in_store != p.stored:
        fig.problems.append(f"the collector counted {p.stored} records stored, the store has {in_store}")
    if missing_runs:
        fig.problems.append(f"{missing_runs} KIST_RUN numbers missing while connected (lost without a gap)")
    if kist_runs == 0:
        fig.problems.append("no KIST_RUN records: was there traffic through the relay?")
    return fig


def _count(store, run_id: str, kind: str) -> int:
    from harness.store.db import open_store

    with open_store(store, readonly=True) as s:
        return sum(1 for _ in s.records(kind, run_id=run_id))


def _missing_run_numbers(store, run_id: str) -> int:
    """RUN counts every scheduler run of one tor process from 1 and every run is traced
    while subscribed (docs/control-events.md), so within one tor process's stretch of the
    store the numbers are contiguous; a restart starts again lower. Numbers absent inside a
    stretch are events lost with no gap saying so."""
    from harness.store.db import open_store

    with open_store(store, readonly=True) as s:
        runs = [r.data.get("run") for _c, r in s.records("KIST_RUN", run_id=run_id)]
    missing = 0
    stretch: list[int] = []
    for n in [*runs, None]:
        if n is None or (stretch and n < stretch[-1]):  # the end, or a restarted tor
            if stretch:
                missing += max(stretch) - min(stretch) + 1 - len(set(stretch))
            stretch = []
        if isinstance(n, int):
            stretch.append(n)
    return missing
