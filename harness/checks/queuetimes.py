"""Tor's reported per-cell queue times, checked against the run's recorded decisions.

For one run, KIST_RUN says which cells were flushed (its `f` steps, in order) and which
kernel writes drained how much of each outbuf (`w`/`W` steps); KIST_QTIME says, per cell,
how long it sat in its circuit queue and, if a write of the same run took it, in the
outbuf. The two come from different code in the patch, so they check each other:

1. the same cells, in the same order (channel, circuit);
2. an outbuf time exactly for the cells the decision timeline says a write of the run
   drained (byte positions: a cell leaves when a write drains past its last byte);
3. outbuf times within the run (0 ≤ t ≤ T1 − T0), queue times non-negative.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.store.db import Store
from harness.store.queries import qtimes, run_payloads
from kist_reference import trace


@dataclass(frozen=True)
class CellTime:
    chan: int
    circ: int
    queue_ns: int | None
    outbuf_ns: int | None


def parse_cells(text: str) -> list[CellTime]:
    """``CELLS=`` of a KIST_QTIME event: ``chan:circ:queue:outbuf,...`` with ``-`` for none."""
    out: list[CellTime] = []
    for item in text.split(",") if text else []:
        chan, circ, q, o = item.split(":")
        out.append(CellTime(int(chan), int(circ), None if q == "-" else int(q), None if o == "-" else int(o)))
    return out


def expected_drained(record: trace.RunRecord) -> list[tuple[int, int, bool]]:
    """(chan, circ, drained by a write of this run) per relay cell, from the decision timeline."""
    outbuf: dict[int, int] = {}
    size: dict[int, int] = {}
    for s in record.snapshots:  # a channel's first snapshot is its state when the run began
        outbuf.setdefault(s.chan, s.outbuf)
        size.setdefault(s.chan, 514 if s.wide else 512)
    pending: dict[int, list[list[int]]] = {}  # chan -> [[end position, index in cells]]
    cells: list[list[Any]] = []
    for step in record.steps:
        if isinstance(step, trace.Snapshot):
            snap = record.snapshots[step.snap]
            outbuf[snap.chan] = snap.outbuf
            size[snap.chan] = 514 if snap.wide else 512
        elif isinstance(step, trace.CellFlush | trace.DestroyFlush):
            chan = step.chan
            outbuf[chan] = outbuf.get(chan, 0) + size.get(chan, 514)
            if isinstance(step, trace.CellFlush):
                pending.setdefault(chan, []).append([outbuf[chan], len(cells)])
                cells.append([chan, step.circ, False])
        elif isinstance(step, trace.KernelWrite | trace.EndWrite):
            drained = step.before - step.after
            outbuf[step.chan] = step.after
            keep = []
            for entry in pending.get(step.chan, []):
                if entry[0] <= drained:
                    cells[entry[1]][2] = True
                else:
                    entry[0] -= drained
                    keep.append(entry)
            pending[step.chan] = keep
    return [(c[0], c[1], c[2]) for c in cells]


@dataclass
class QueueCheck:
    runs: int = 0
    cells: int = 0
    mismatches: list[str] = field(default_factory=list)
    unmatched: int = 0  # KIST_QTIME events whose run has no KIST_RUN (or the reverse)
    queue_ms: list[float] = field(default_factory=list)
    outbuf_ms: list[float] = field(default_factory=list)

    def describe(self) -> str:
        if not self.runs:
            return ("Queue times: no run had both KIST_RUN and KIST_QTIME records; nothing to check "
                    f"({self.unmatched} unmatched).")
        return (f"Queue times: {self.cells:,} cells in {self.runs:,} runs checked against the decision timeline: "
                f"{len(self.mismatches)} mismatches" + (f" (first: {self.mismatches[0]})" if self.mismatches else "")
                + f"; {self.unmatched} events without their pair.")


def check_pairs(pairs: Iterable[tuple[str, trace.RunRecord, list[CellTime]]]) -> QueueCheck:
    """(relay, RunRecord, cells of its KIST_QTIME) per run → the check."""
    result = QueueCheck()
    for relay, record, reported in pairs:
        result.runs += 1
        expect = expected_drained(record)
        span = record.t1_ns - record.t0_ns
        where = f"{relay} run {record.run}"
        if [(c.chan, c.circ) for c in reported] != [(e[0], e[1]) for e in expect]:
            result.mismatches.append(f"{where}: KIST_QTIME lists {len(reported)} cells, KIST_RUN flushed "
                                     f"{len(expect)} (or in another order)")
            continue
        for i, (cell, (_chan, _circ, drained)) in enumerate(zip(reported, expect, strict=True)):
            result.cells += 1
            if (cell.outbuf_ns is not None) != drained:
                result.mismatches.append(f"{where} cell {i}: outbuf time {'given' if cell.outbuf_ns is not None else '-'}"
                                         f" but the timeline says {'drained' if drained else 'still in the outbuf'}")
            if cell.outbuf_ns is not None and not 0 <= cell.outbuf_ns <= span:
                result.mismatches.append(f"{where} cell {i}: outbuf time {cell.outbuf_ns} ns outside the run "
                                         f"(0..{span} ns)")
            if cell.queue_ns is not None:
                if cell.queue_ns < 0:
                    result.mismatches.append(f"{where} cell {i}: negative queue time {cell.queue_ns} ns")
                result.queue_ms.append(cell.queue_ns / 1e6)
            if cell.outbuf_ns is not None:
                result.outbuf_ms.append(cell.outbuf_ns / 1e6)
    return result


def pairs_from_store(store_path: Path) -> tuple[Iterator[tuple[str, trace.RunRecord, list[CellTime]]], list[int]]:
    """Join each relay's KIST_QTIME with its KIST_RUN by run number."""
    unmatched = [0]
    with Store(store_path, readonly=True) as store:
        cells_by_run: dict[tuple[str, int], list[CellTime]] = {}
        for ctx, run, cells in qtimes(store):
            if run is not None:
                cells_by_run[(ctx.fingerprint, run)] = parse_cells(cells)
        runs: list[tuple[str, trace.RunRecord, list[CellTime]]] = []
        for ctx, payload in run_payloads(store):
            record = trace.parse_wire(payload)
            cells_of_run = cells_by_run.pop((ctx.fingerprint, record.run), None)
            if cells_of_run is None:
                unmatched[0] += 1
                continue
            runs.append((ctx.fingerprint, record, cells_of_run))
    unmatched[0] += len(cells_by_run)
    return iter(runs), unmatched


def check_store(store_path: Path) -> QueueCheck:
    pairs, unmatched = pairs_from_store(store_path)
    result = check_pairs(pairs)
    result.unmatched = unmatched[0]
    return result
