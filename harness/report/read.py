"""Store → ReportData: the numbers behind every figure, read from a store.

Works on any store: one from `kist-harness run` (downloads, every relay, both arms) or
one a relay operator collected on a live relay (no downloads: those panels are skipped).
A run's store holds one ``variant`` record per traffic phase (harness.run.job), tying the
phase's run id to its load/loss variant; records of other run ids count as the base.
"""

from __future__ import annotations

import itertools
import json
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.checks.differential import DiffSummary
from harness.checks.queuetimes import parse_cells
from harness.report import limitbound, outbufleft
from harness.report.data import (
    BASE,
    Curve,
    Distribution,
    Download,
    ReportData,
    RunOverhead,
    VariantInfo,
)
from harness.store import queries
from harness.store.db import Store
from harness.store.records import (
    BW,
    KIST_KQTIME,
    KIST_OVERHEAD,
    KIST_QTIME,
    KIST_RUN,
    UNATTRIBUTED,
    Context,
)
from harness.store.typed import PhaseRecord

# Above this many distribution records (BW, KIST_QTIME, KIST_KQTIME, KIST_OVERHEAD) the report
# reads the store's per-minute aggregates instead of every record: a day on a busy relay is
# millions of records, tens of seconds per panel raw, under a second aggregated.
RAW_RECORDS_LIMIT = 200_000
OVERHEAD_SAMPLE = 20_000  # runs in the overhead scatter of a store read through its aggregates


def read_store(store_path: Path, *, title: str | None = None, environment: Mapping[str, str] | None = None,
               diff: DiffSummary | None = None, notes: tuple[str, ...] = (),
               raw_records_limit: int = RAW_RECORDS_LIMIT) -> ReportData:
    """Every number the report shows, from the store at store_path (opened once, read-only)."""
    downloads: list[Download] = []
    env: dict[str, str] = dict(environment or {})
    unattributed: dict[str, int] = {}
    with Store(store_path, readonly=True) as store:
        kinds = store.kinds()
        phases = queries.phases(store)  # run id -> the phase's plan and results
        variant_of = {run_id: p.variant for run_id, p in phases.items()}
        for ctx, d in queries.downloads(store):
            variant = variant_of.get(ctx.run_id, BASE)
            if ctx.arm in UNATTRIBUTED:
                unattributed[variant] = unattributed.get(variant, 0) + 1
                continue
            downloads.append(Download(ctx.arm, variant, d.client, d.size, d.ttfb_s, d.ttlb_s, d.ok))
        volume = sum(kinds.get(k, 0) for k in (BW, KIST_QTIME, KIST_KQTIME, KIST_OVERHEAD))
        aggregated = volume > raw_records_limit
        dists = (_from_aggregates(store, variant_of) if aggregated else _from_records(store, variant_of))
        for _id, ctx in store.contexts():
            if ctx.tor_version not in ("unknown", "") and "tor" not in env:
                env["tor"] = ctx.tor_version
            if ctx.patch_hash not in ("none", "") and "patch hash" not in env:
                env["patch hash"] = ctx.patch_hash
        interval = queries.interval_ms(store)
    env.setdefault("kernel", platform.release())
    env["store"] = f"{store_path} ({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))})"
    variants = tuple(VariantInfo(p, unattributed.get(p.variant, 0)) for p in phases.values())
    if not variants and unattributed:
        variants = (VariantInfo(PhaseRecord(BASE), unattributed.get(BASE, 0)),)
    extra = list(notes) + [v.phase.skipped for v in variants if v.phase.skipped]
    if aggregated:
        extra.append(f"A large store ({volume:,} distribution records): the CDFs and medians come from its "
                     "per-minute histograms (bins 4.4% wide; a quantile is at most one bin high) and the "
                     f"overhead scatter shows the first {OVERHEAD_SAMPLE:,} runs; the overhead slope and "
                     "every CDF cover every run.")
    extra += [f"{p.variant}: {p.period_warning}" for p in phases.values() if p.period_warning]
    recorded = {p.variant: p.straddle_note for p in phases.values()}
    for v in variants:
        if v.unattributed:  # the run's own line has the per-size split; a store from elsewhere gets the count
            extra.append(recorded.get(v.name) or (
                f"{v.name}: {v.unattributed} download{'s' if v.unattributed != 1 else ''} ran across an arm switch"
                + (f" (period {v.phase.period_s:g} s)" if v.phase.period_s else "")
                + " and are not attributed to an arm; a period of at least twice the longest download keeps "
                "them in one arm (--period)."))
    if not downloads:
        extra.append("No downloads in this store (a live relay's, or traffic did not run): client panels skipped.")
    if not dists.queue:
        extra.append("No KIST_QTIME events: Tor queue times unavailable (unpatched relay or not subscribed).")
    if dists.overhead and kinds.get(KIST_RUN):
        extra.append("Scheduler overhead was measured while KIST_RUN tracing was on. Since patch 0005 SOCKNS times "
                     "the socket reads alone (an older series also timed the record's socket list, several us per "
                     "socket). With few pending sockets per run, cold caches dominate the per-socket cost: "
                     "`python -m harness.bench.tcpinfo` prints this machine's syscall floor, hot and cold.")
    if not dists.kernel:
        extra.append("No KIST_KQTIME events: kernel queue time unavailable (a relay without patch 0004, not "
                     "subscribed, or a kernel that refuses SO_TIMESTAMPING).")
    bound = limitbound.note(store_path)  # how often KIST's socket limit bound (harness.report.limitbound)
    if bound:
        extra.append(bound)
    if left := outbufleft.note(store_path):  # where KIST's cells waited instead (harness.report.outbufleft)
        extra.append(left)
    return ReportData(title or f"kist-harness report: {store_path.name}", env, tuple(downloads), dists.goodput,
                      dists.queue, dists.kernel, tuple(dists.overhead), diff, tuple(extra), variants,
                      dists.pending, dists.per_socket, dists.fit, interval)


@dataclass
class _Distributions:
    goodput: Mapping[Curve, Distribution] = field(default_factory=dict)
    queue: Mapping[Curve, Distribution] = field(default_factory=dict)
    kernel: Mapping[Curve, Distribution] = field(default_factory=dict)
    overhead: list[RunOverhead] = field(default_factory=list)
    pending: Mapping[Curve, Distribution] = field(default_factory=dict)      # aggregated stores only
    per_socket: Mapping[Curve, Distribution] = field(default_factory=dict)   # aggregated stores only
    fit: dict[Curve, tuple[float, float]] = field(default_factory=dict)   # aggregated stores only


def _overhead(ctx: Context, d: Mapping[str, Any], variant_of: Mapping[str, str]) -> RunOverhead | None:
    sockets = int(d.get("sockets", 0) or 0)
    if d.get("sched") in ("KIST", "KISTLite") and sockets > 0:
        # labelled by the scheduler that ran, not the arm tag: runs around a switch
        return RunOverhead(str(d["sched"]), variant_of.get(ctx.run_id, BASE), ctx.fingerprint,
                           sockets, int(d.get("sock_ns", 0)) / 1000.0, int(d.get("run_ns", 0)) / 1000.0)
    return None


def _from_records(store: Store, variant_of: Mapping[str, str]) -> _Distributions:
    """Every value, from every record: exact (the differential test compares them with SQL)."""
    out = _Distributions()
    lists: dict[str, dict[Curve, list[float]]] = {"goodput": {}, "queue": {}, "kernel": {}}

    def add(which: str, ctx: Context, value: float) -> None:
        if ctx.arm not in UNATTRIBUTED:
            lists[which].setdefault(Curve(ctx.arm, variant_of.get(ctx.run_id, BASE)), []).append(value)

    for ctx, rec in store.records(BW):
        written = rec.data.get("written")
        if isinstance(written, int | float):
            add("goodput", ctx, float(written))
    for ctx, _run, text in queries.qtimes(store):
        for cell in parse_cells(text):
            if cell.queue_ns is not None:
                add("queue", ctx, cell.queue_ns / 1e6)
    for ctx, rec in store.records(KIST_KQTIME):
        snd = rec.data.get("snd_ns")
        if isinstance(snd, int):
            add("kernel", ctx, snd / 1e6)
    for ctx, rec in store.records(KIST_OVERHEAD):
        run = _overhead(ctx, rec.data, variant_of)
        if run is not None:
            out.overhead.append(run)
    out.goodput, out.queue, out.kernel = (lists[k] for k in ("goodput", "queue", "kernel"))
    return out


def _from_aggregates(store: Store, variant_of: Mapping[str, str]) -> _Distributions:
    """The store's per-minute histograms and sums (harness.store.aggregates), per curve."""
    from harness.store.aggregates import Histogram

    def by_curve(hists: Mapping[tuple[str, ...], Histogram], kist_only: bool = False) -> dict[Curve, Distribution]:
        merged: dict[Curve, Histogram] = {}
        for (label, run_id), hist in hists.items():
            if label in UNATTRIBUTED or (kist_only and label not in ("KIST", "KISTLite")):
                continue
            curve = Curve(label, variant_of.get(run_id, BASE))
            merged[curve] = merged[curve].merged(hist) if curve in merged else hist
        return dict(merged)

    out = _Distributions()
    out.goodput = by_curve(store.histogram("goodput_Bps", by=("arm", "run_id")))
    out.queue = by_curve(store.histogram("queue_ms", by=("arm", "run_id")))
    out.kernel = by_curve(store.histogram("kernel_snd_ms", by=("arm", "run_id")))
    # labelled by the scheduler that ran, not the arm tag: runs around a switch
    out.pending = by_curve(store.histogram("sockets", by=("sched", "run_id")), kist_only=True)
    out.per_socket = by_curve(store.histogram("sock_us_per_socket", by=("sched", "run_id")), kist_only=True)
    pp = store.totals("fit_pp", by=("sched", "run_id"))
    for key, (_n, pt) in store.totals("fit_pt", by=("sched", "run_id")).items():
        if key[0] in ("KIST", "KISTLite"):
            curve = Curve(key[0], variant_of.get(key[1], BASE))
            old = out.fit.get(curve, (0.0, 0.0))
            out.fit[curve] = (old[0] + pt, old[1] + pp.get(key, (0, 0.0))[1])
    for ctx, rec in itertools.islice(store.records(KIST_OVERHEAD), OVERHEAD_SAMPLE * 4):
        run = _overhead(ctx, rec.data, variant_of)
        if run is not None:
            out.overhead.append(run)
            if len(out.overhead) >= OVERHEAD_SAMPLE:
                break
    return out




def dump(data: ReportData) -> str:
    """The loaded numbers as JSON, for tests and for people who want the raw figures."""
    return json.dumps({"downloads": len(data.downloads),
                       "goodput": {k.label: len(v) for k, v in data.goodput_Bps.items()},
                       "tor_queue": {k.label: len(v) for k, v in data.tor_queue_ms.items()},
                       "overhead_runs": len(data.overhead)}, indent=1)
