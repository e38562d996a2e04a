"""Per-minute pre-aggregates of the store: what the report's panels need, without a day's records.

A relay tracing every scheduler run stores millions of records a day; a report that reads
each one back takes minutes. The store therefore keeps, per minute of arrival time, per
context (relay, arm, run id) and per scheduler that ran (``sched``, ``-`` where the event
has none), two kinds of rows, added in the same transaction as the records they summarise
(``Store.write_batch``), so a crash never leaves them out of step with the raw records:

- **counters** (``COUNTERS``): how many records contributed (``n``) and the sum of a value
  (``total``), e.g. KIST runs, replay decisions, cells, goodput bytes, and the two sums of the
  least-squares fit the report draws through the overhead scatter;
- **histograms** (``HISTOGRAMS``): a fixed log-binned histogram of a per-run, per-cell or
  per-second value, so CDFs and quantiles of a whole day are a sum over bins. Bin ``b``
  holds values in ``[2**(b/16), 2**((b+1)/16))`` (4.4 % wide, so every integer up to 22 has
  its own bin); values ≤ 0 (and NaN) go to ``ZERO_BIN``.

This module is pure: it turns records into increments (:class:`Increments`); the store
owns the tables and the SQL.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.store.records import BW, KIST_KQTIME, KIST_OVERHEAD, KIST_QTIME, KIST_RUN
from kist_reference import trace

MINUTE_S = 60
BINS_PER_OCTAVE = 16
ZERO_BIN = -(1 << 20)  # below every real bin (2**(-65536) is far below any measured value)
VERSION = 2            # bump when a definition changes: the store rebuilds on open

NO_SCHED = "-"

# counter metric -> what n and total count (the unit of total)
COUNTERS: Mapping[str, str] = {
    "kist_runs": "KIST_RUN records (n) and the same count (total)",
    "decisions": "KIST_RUN records (n) and the decisions replay checks in them (total)",
    "cells": "KIST_RUN records (n) and the cells their runs flushed, relay + DESTROY (total)",
    "overhead_runs": "KIST_OVERHEAD records (n) and the cells they report (total)",
    "written_bytes": "KIST_OVERHEAD records (n) and the outbuf bytes their kernel writes moved (total)",
    "fit_pt": "KIST_OVERHEAD runs with sockets > 0 (n) and the sum of sockets x TCP-info us (total)",
    "fit_pp": "KIST_OVERHEAD runs with sockets > 0 (n) and the sum of sockets squared (total)",
    "qtime_cells": "KIST_QTIME records (n) and the cells they list (total)",
    "goodput_bytes": "BW events, one a second (n) and the bytes written (total)",
}
# histogram metric -> the value binned (its unit)
HISTOGRAMS: Mapping[str, str] = {
    "npend": "KIST_RUN NPEND: channels pending at run start (channels)",
    "pending": "KIST_OVERHEAD PENDING: channels pending at run start (channels)",
    "sockets": "KIST_OVERHEAD SOCKETS of runs with sockets > 0 (the report's 'pending sockets')",
    "sock_us": "KIST_OVERHEAD SOCKNS / 1000 of runs with sockets > 0 (us of TCP-info collection)",
    "sock_us_per_socket": "KIST_OVERHEAD SOCKNS / 1000 / SOCKETS of runs with sockets > 0 (us)",
    "run_us": "KIST_OVERHEAD RUNNS / 1000 (us)",
    "queue_ms": "KIST_QTIME circuit-queue time of each cell that has one (ms)",
    "outbuf_ms": "KIST_QTIME outbuf time of each cell that has one (ms)",
    "goodput_Bps": "BW bytes written in each second (B/s)",
    "kernel_sched_ms": "KIST_KQTIME SCHEDNS / 1e6: a sampled write's last byte, write to qdisc (ms)",
    "kernel_snd_ms": "KIST_KQTIME SNDNS / 1e6: a sampled write's last byte, write to device (ms)",
}

def bin_of(value: float) -> int:
    """The histogram bin of a value (see the module docstring)."""
    if not value > 0:  # also NaN
        return ZERO_BIN
    return math.floor(math.log2(value) * BINS_PER_OCTAVE)


def bin_edges(b: int) -> tuple[float, float]:
    """[lower, upper) of a bin; ZERO_BIN is [0, 0]."""
    if b == ZERO_BIN:
        return (0.0, 0.0)
    return (2.0 ** (b / BINS_PER_OCTAVE), 2.0 ** ((b + 1) / BINS_PER_OCTAVE))


@dataclass(frozen=True)
class Selection:
    """Which aggregate rows a query reads: equality filters on the context and the scheduler,
    and a time range. Aggregates have minute resolution: ``since`` and ``until`` (s since the
    epoch) are rounded down to whole minutes, so a range selects the records with ``ts`` in
    [since // 60 * 60, until // 60 * 60)."""

    arm: str | None = None
    fingerprint: str | None = None
    run_id: str | None = None
    sched: str | None = None
    since: float | None = None
    until: float | None = None


@dataclass(frozen=True)
class Histogram:
    """A log-binned histogram read back from the store: bin -> count (``bin_of``)."""

    metric: str
    counts: Mapping[int, int]
    scale: float = 1.0  # values (edges, quantiles) are multiplied by this: a unit change

    @property
    def n(self) -> int:
        return sum(self.counts.values())

    def __len__(self) -> int:  # how many values: a histogram stands in where a list of them went
        return self.n

    def merged(self, other: Histogram) -> Histogram:
        """Both histograms' values in one (e.g. the runs of one arm in several phases)."""
        counts = dict(self.counts)
        for b, n in other.counts.items():
            counts[b] = counts.get(b, 0) + n
        return Histogram(self.metric, counts, self.scale)

    def scaled(self, factor: float) -> Histogram:
        """The same histogram in another unit (e.g. 1e-6 for B/s -> MB/s)."""
        return Histogram(self.metric, self.counts, self.scale * factor)

    def edges(self, b: int) -> tuple[float, float]:
        lo, hi = bin_edges(b)
        return lo * self.scale, hi * self.scale

    def cdf(self) -> tuple[list[float], list[float]]:
        """Upper bin edges and the fraction of values below each: the points of a CDF
        drawn as steps, exact at every bin edge."""
        total = self.n
        xs: list[float] = []
        ys: list[float] = []
        running = 0
        for b in sorted(self.counts):
            running += self.counts[b]
            xs.append(self.edges(b)[1])
            ys.append(running / total)
        return xs, ys

    def quantile(self, q: float) -> float:
        """The upper edge of the bin holding the q-quantile: at most one bin (4.4 %) above
        the exact value; NaN when empty."""
        total = self.n
        if not total:
            return math.nan
        rank = q * total
        running = 0
        for b in sorted(self.counts):
            running += self.counts[b]
            if running >= rank:
                return self.edges(b)[1]
        return self.edges(max(self.counts))[1]


@dataclass
class Increments:
    """What a set of records adds to the aggregates, keyed by (metric, ctx, sched, minute):
    a counter's [n, total], a histogram's {bin: n}."""

    counters: dict[tuple[str, int, str, int], list[int | float]] = field(default_factory=dict)
    bins: dict[tuple[str, int, str, int], dict[int, int]] = field(default_factory=dict)
    unfit: int = 0  # records of an aggregated kind whose fields did not fit it

    def count(self, metric: str, key: tuple[int, str, int], total: float) -> None:
        k = (metric, *key)
        row = self.counters.get(k)
        if row is None:
            self.counters[k] = [1, total]
        else:
            row[0] += 1
            row[1] += total

    def histogram(self, metric: str, key: tuple[int, str, int]) -> dict[int, int]:
        """bin -> n of one histogram row group, for adding many values (a run's cells)."""
        k = (metric, *key)
        hist = self.bins.get(k)
        if hist is None:
            hist = self.bins[k] = {}
        return hist

    def sample(self, metric: str, key: tuple[int, str, int], value: float) -> None:
        hist = self.histogram(metric, key)
        b = bin_of(value)
        hist[b] = hist.get(b, 0) + 1

    def add(self, ctx: int, kind: str, ts: float, data: Mapping[str, Any], raw: str | None) -> None:
        """One stored record (``ctx`` is the store's context id). A record whose fields do
        not fit its kind is stored all the same, only not aggregated: it must never cost
        the batch it came in (handlers convert every value before adding any)."""
        handler = _HANDLERS.get(kind)
        if handler is not None:
            try:
                minute = int(ts // MINUTE_S)
                if not -(2**62) < minute < 2**62:  # a damaged store's timestamp: SQLite has 64 bits
                    raise ValueError(f"timestamp {ts!r} out of range")
                handler(self, ctx, minute, data, raw)
            except (ValueError, TypeError, KeyError, AttributeError, ArithmeticError):
                self.unfit += 1

    def __bool__(self) -> bool:
        return bool(self.counters or self.bins)


def increments(records: Iterable[tuple[int, str, float, Mapping[str, Any], str | None]]) -> Increments:
    """(ctx id, kind, ts, data, raw) of stored records → their increments."""
    inc = Increments()
    for ctx, kind, ts, data, raw in records:
        inc.add(ctx, kind, ts, data, raw)
    return inc


# --------------------------------------------------------------------------- per record kind


def _sched(data: Mapping[str, Any]) -> str:
    s = data.get("sched")
    return s if isinstance(s, str) else NO_SCHED


def _kist_run(inc: Increments, ctx: int, minute: int, data: Mapping[str, Any], raw: str | None) -> None:
    if "decisions" not in data or "cells" not in data:  # stored before these fields existed
        if raw is None:
            return
        try:
            data = run_fields(trace.parse_wire(raw))
        except ValueError:
            return
    decisions, cells, npend = int(data["decisions"]), int(data["cells"]), int(data.get("n_pending", 0))
    key = (ctx, _sched(data), minute)
    inc.count("kist_runs", key, 1)
    inc.count("decisions", key, decisions)
    inc.count("cells", key, cells)
    inc.sample("npend", key, npend)


def _kist_overhead(inc: Increments, ctx: int, minute: int, data: Mapping[str, Any], _raw: str | None) -> None:
    pending, cells, written, run_ns, sockets, sock_ns = (
        int(data.get(name, 0) or 0) for name in ("pending", "cells", "bytes", "run_ns", "sockets", "sock_ns"))
    key = (ctx, _sched(data), minute)
    inc.sample("pending", key, pending)
    inc.count("overhead_runs", key, cells)
    inc.count("written_bytes", key, written)
    inc.sample("run_us", key, run_ns / 1000.0)
    if sockets > 0:
        sock_us = sock_ns / 1000.0
        inc.count("fit_pt", key, sockets * sock_us)
        inc.count("fit_pp", key, sockets * sockets)
        inc.sample("sockets", key, sockets)
        inc.sample("sock_us", key, sock_us)
        inc.sample("sock_us_per_socket", key, sock_us / sockets)


def _kist_qtime(inc: Increments, ctx: int, minute: int, data: Mapping[str, Any], _raw: str | None) -> None:
    # older stores kept KIST_QTIME as stem's bare Event: its keywords under "kw", as strings
    kw = data.get("kw")
    fields: Mapping[str, Any] = kw if isinstance(kw, Mapping) else data
    cells = fields.get("CELLS", fields.get("cells", ""))
    sched = fields.get("SCHED", fields.get("sched"))
    key = (ctx, sched if isinstance(sched, str) else NO_SCHED, minute)
    items = cells.split(",") if isinstance(cells, str) and cells else []
    inc.count("qtime_cells", key, len(items))
    hists = (inc.histogram("queue_ms", key), inc.histogram("outbuf_ms", key))
    for item in items:
        parts = item.split(":")
        if len(parts) != 4:
            continue
        for hist, text in zip(hists, parts[2:], strict=True):
            if text != "-":  # "-": no time for this cell (docs/control-events.md, 4.1.z)
                try:
                    b = bin_of(int(text) / 1e6)
                except ValueError:  # the collector stores the line; one bad cell is skipped
                    continue
                hist[b] = hist.get(b, 0) + 1


def _kist_kqtime(inc: Increments, ctx: int, minute: int, data: Mapping[str, Any], _raw: str | None) -> None:
    # no SCHED field: a write belongs to the relay, whichever scheduler wrote it
    key = (ctx, NO_SCHED, minute)
    for field_name, metric in (("sched_ns", "kernel_sched_ms"), ("snd_ns", "kernel_snd_ms")):
        value = data.get(field_name)
        if isinstance(value, int):
            inc.sample(metric, key, value / 1e6)


def _bw(inc: Increments, ctx: int, minute: int, data: Mapping[str, Any], _raw: str | None) -> None:
    written = data.get("written")
    if isinstance(written, int | float) and not isinstance(written, bool):
        key = (ctx, NO_SCHED, minute)
        inc.count("goodput_bytes", key, written)
        inc.sample("goodput_Bps", key, written)


_HANDLERS = {KIST_RUN: _kist_run, KIST_OVERHEAD: _kist_overhead, KIST_QTIME: _kist_qtime,
             KIST_KQTIME: _kist_kqtime, BW: _bw}
KINDS = frozenset(_HANDLERS)  # the record kinds that feed aggregates


# --------------------------------------------------------------------------- KIST_RUN fields

_CHECKS = frozenset(trace.STEP_TYPES[op] for op in "pscvfdkwW")  # one decision each


def run_fields(run: trace.RunRecord) -> dict[str, Any]:
    """What the store keeps of a KIST_RUN besides its raw line: the header fields queries
    filter on, and the counts the aggregates sum (so they never re-parse the raw line).

    ``decisions`` is what replay (``kist_reference.replay``) checks in a run that does not
    diverge: each p, s, c, v, f, d, k, w and W step; each snapshot step of a channel the run
    already knew (its scheduler state is checked); for KIST and KISTLite each start limit
    and the set of end-of-run writes; READD, FINAL and NEXT."""
    kinds = Counter(map(type, run.steps))  # counted in C: most runs need nothing more
    n = 3 + (run.n_pending + 1 if run.sched != "Vanilla" else 0) + sum(kinds[c] for c in _CHECKS)
    if kinds[trace.Snapshot]:
        known = {s.chan for s in run.snapshots[: run.n_pending]}
        for step in run.steps:
            if type(step) is trace.Snapshot:
                chan = run.snapshots[step.snap].chan
                n += chan in known
                known.add(chan)
            elif type(step) is trace.External:
                known.add(step.chan)
    cells = kinds[trace.CellFlush] + kinds[trace.DestroyFlush]
    return {"run": run.run, "sched": run.sched, "n_pending": run.n_pending,
            "t0_ns": run.t0_ns, "ti_ns": run.ti_ns, "t1_ns": run.t1_ns,
            "interval_ms": run.params.interval_ms, "steps": len(run.steps),
            "decisions": n, "cells": cells}


def summarize_payloads(payloads: list[str]) -> list[dict[str, Any] | str]:
    """For a parse worker process: each KIST_RUN payload's fields, or why it does not parse."""
    out: list[dict[str, Any] | str] = []
    for payload in payloads:
        try:
            out.append(run_fields(trace.parse_wire(payload)))
        except ValueError as exc:  # TraceError names the field
            out.append(f"KIST_RUN payload does not parse: {exc}")
        except Exception as exc:  # noqa: BLE001 - a parser bug must cost one record, not the collector
            out.append(f"KIST_RUN payload does not parse: {type(exc).__name__}: {exc}")
    return out
