"""What the checks and the report read from a store, in one place, on an open Store.

Each query names its record kind from ``harness.store.records`` and turns stored fields
into typed values, tolerating stores written by older versions of the harness (a field
missing, KIST_QTIME kept as stem's bare event). Callers open the store once and ask.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from harness.config import BASE_VARIANT as BASE
from harness.store.db import Store
from harness.store.records import (
    KIST_QTIME,
    KIST_RUN,
    Context,
    Kind,
)
from harness.store.typed import DownloadRecord, JudgeRecord, PhaseRecord


def run_payloads(store: Store, *, run_id: str | None = None) -> Iterator[tuple[Context, str]]:
    """Each KIST_RUN record's wire payload (verbatim: what replay reads), in arrival order."""
    for ctx, rec in store.records(KIST_RUN, run_id=run_id):
        if rec.raw is not None:
            yield ctx, rec.raw


def qtime_cells(data: Mapping[str, Any]) -> tuple[int | None, str]:
    """(run number, ``CELLS=`` text) of a stored KIST_QTIME record, of any store version."""
    kw = data.get("kw")
    if isinstance(kw, Mapping):  # a store written before KIST_QTIME had its own class
        data = kw
    run = data.get("run", data.get("RUN"))
    cells = data.get("cells_list", data.get("CELLS", data.get("cells", "")))
    return (int(run) if run is not None else None), (cells if isinstance(cells, str) else "")


def qtimes(store: Store) -> Iterator[tuple[Context, int | None, str]]:
    """(context, run number, ``CELLS=`` text) of every KIST_QTIME record, in arrival order."""
    for ctx, rec in store.records(KIST_QTIME):
        run, cells = qtime_cells(rec.data)
        yield ctx, run, cells


def phases(store: Store) -> dict[str, PhaseRecord]:
    """run id -> its traffic phase: the ``variant`` records of a run, plan then results, merged
    (in run order: a dict keeps the order of the first record of each run id)."""
    merged: dict[str, dict[str, Any]] = {}
    for ctx, rec in store.records(Kind.VARIANT):
        merged.setdefault(ctx.run_id, {}).update(rec.data)
    return {run_id: PhaseRecord.from_data(d, BASE) for run_id, d in merged.items()}


def downloads(store: Store) -> Iterator[tuple[Context, DownloadRecord]]:
    """Every download record with its context (the arm it is attributed to, or STRADDLE)."""
    for ctx, rec in store.records(Kind.DOWNLOAD):
        yield ctx, DownloadRecord.from_data(rec.data, ctx.fingerprint)


def interval_ms(store: Store) -> float | None:
    """The KIST interval in force: that of the first KIST or KISTLite run (the queue-time
    figure's marker). Read from the fields the store keeps of each run; a record stored
    before they existed is parsed from its payload."""
    for _ctx, rec in store.records(KIST_RUN):
        sched, interval = rec.data.get("sched"), rec.data.get("interval_ms")
        if (sched is None or interval is None) and rec.raw is not None:
            from kist_reference import trace

            try:
                run = trace.parse_wire(rec.raw)
            except ValueError:
                continue
            sched, interval = run.sched, run.params.interval_ms
        if sched in ("KIST", "KISTLite") and isinstance(interval, int | float):
            return float(interval)
    return None


def judge(store: Store) -> JudgeRecord | None:
    """The policy the store's runs were judged with (``run --policy``), or None: the faithful model."""
    found = None
    for _ctx, rec in store.records(Kind.JUDGE):
        found = JudgeRecord.from_data(rec.data)  # the last one: a store is written by one run
    return found
