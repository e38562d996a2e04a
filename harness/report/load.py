"""Store → ReportData: the numbers behind every figure, read from the collector's store.

Works on any store: one from `kist-harness run` (downloads, every relay, both arms) or
one a relay operator collected on a live relay (no downloads: those panels are skipped).
A run's store holds one ``variant`` record per traffic phase (harness.runjob), tying the
phase's run id to its load/loss variant; records of other run ids count as the base.
"""

from __future__ import annotations

import itertools
import json
import platform
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.queuetimes import QTIME, _qtime_cells, parse_cells
from harness.report.model import (
    BASE,
    Curve,
    DiffSummary,
    Distribution,
    Download,
    ReportData,
    RunOverhead,
    VariantInfo,
)

DOWNLOAD = "download"
VARIANT = "variant"  # harness.variants.VARIANT
KQTIME = "KIST_KQTIME"  # harness.control.events.KIST_KQTIME: SNDNS is the paper's kernel queue time
# Arms no curve is drawn for: records from before the first switch ("-") and downloads that
# ran across an arm switch ("straddle", harness.trafficphase).
UNATTRIBUTED = frozenset({"-", "straddle"})
# Above this many distribution records (BW, KIST_QTIME, KIST_KQTIME, KIST_OVERHEAD) the report
# reads the store's per-minute aggregates instead of every record: a day on a busy relay is
# millions of records, tens of seconds per panel raw, under a second aggregated.
RAW_RECORDS_LIMIT = 200_000
OVERHEAD_SAMPLE = 20_000  # runs in the overhead scatter of a store read through its aggregates


def load(store_path: Path, *, title: str | None = None, environment: Mapping[str, str] | None = None,
         diff: DiffSummary | None = None, notes: tuple[str, ...] = (),
         raw_records_limit: int = RAW_RECORDS_LIMIT) -> ReportData:
    from harness.control.store import Store

    downloads: list[Download] = []
    env: dict[str, str] = dict(environment or {})
    unattributed: dict[str, int] = {}
    with Store(store_path, readonly=True) as store:
        kinds = store.kinds()
        phases: dict[str, dict[str, object]] = {}
        for ctx, rec in store.records(VARIANT):  # a phase's plan, then its results
            phases.setdefault(ctx.run_id, {}).update(rec.data)
        variant_of = {run_id: str(d.get("variant", BASE)) for run_id, d in phases.items()}
        for ctx, rec in store.records(DOWNLOAD):
            d = rec.data
            variant = variant_of.get(ctx.run_id, BASE)
            if ctx.arm in UNATTRIBUTED:
                unattributed[variant] = unattributed.get(variant, 0) + 1
                continue
            ok = d.get("outcome") == "ok" and d.get("ttlb_s") is not None
            downloads.append(Download(ctx.arm, variant, str(d.get("client", ctx.fingerprint)), int(d["size"]),
                                      float(d.get("ttfb_s") or float("nan")), float(d.get("ttlb_s") or float("nan")),
                                      ok))
        volume = sum(kinds.get(k, 0) for k in ("BW", QTIME, KQTIME, "KIST_OVERHEAD"))
        aggregated = volume > raw_records_limit
        dists = (_from_aggregates(store, variant_of) if aggregated else _from_records(store, variant_of))
        for _id, ctx in store.contexts():
            if ctx.tor_version not in ("unknown", "") and "tor" not in env:
                env["tor"] = ctx.tor_version
            if ctx.patch_hash not in ("none", "") and "patch hash" not in env:
                env["patch hash"] = ctx.patch_hash
    env.setdefault("kernel", platform.release())
    env["store"] = f"{store_path} ({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))})"
    variants = tuple(_variant_info(d, unattributed) for d in phases.values())
    if not variants and unattributed:
        variants = (VariantInfo(BASE, unattributed=unattributed.get(BASE, 0)),)
    extra = list(notes) + [v.skipped for v in variants if v.skipped]
    if aggregated:
        extra.append(f"A large store ({volume:,} distribution records): the CDFs and medians come from its "
                     "per-minute histograms (bins 4.4% wide; a quantile is at most one bin high) and the "
                     f"overhead scatter shows the first {OVERHEAD_SAMPLE:,} runs; the overhead slope and "
                     "every CDF cover every run.")
    extra += [f"{d['variant']}: {d['period_warning']}" for d in phases.values() if d.get("period_warning")]
    recorded = {str(d.get("variant")): str(d.get("straddle_note") or "") for d in phases.values()}
    for v in variants:
        if v.unattributed:  # the run's own line has the per-size split; a store from elsewhere gets the count
            extra.append(recorded.get(v.name) or (
                f"{v.name}: {v.unattributed} download{'s' if v.unattributed != 1 else ''} ran across an arm switch"
                + (f" (period {v.period_s:g} s)" if v.period_s else "")
                + " and are not attributed to an arm; a period of at least twice the longest download keeps "
                "them in one arm (--period)."))
    if not downloads:
        extra.append("No downloads in this store (a live relay's, or traffic did not run): client panels skipped.")
    if not dists.queue:
        extra.append("No KIST_QTIME events: Tor queue times unavailable (unpatched relay or not subscribed).")
    if dists.overhead and kinds.get("KIST_RUN"):
        extra.append("Scheduler overhead was measured while KIST_RUN tracing was on, which records every socket "
                     "read inside the timed loop; subscribe to KIST_OVERHEAD alone for the untraced cost.")
    if not dists.kernel:
        extra.append("No KIST_KQTIME events: kernel queue time unavailable (a relay without patch 0004, not "
                     "subscribed, or a kernel that refuses SO_TIMESTAMPING).")
    return ReportData(title or f"kist-harness report: {store_path.name}", env, tuple(downloads), dists.goodput,
                      dists.queue, dists.kernel, tuple(dists.overhead), diff, tuple(extra), variants,
                      dists.pending, dists.per_socket, dists.fit)


@dataclass
class _Distributions:
    goodput: Mapping[Curve, Distribution] = field(default_factory=dict)
    queue: Mapping[Curve, Distribution] = field(default_factory=dict)
    kernel: Mapping[Curve, Distribution] = field(default_factory=dict)
    overhead: list[RunOverhead] = field(default_factory=list)
    pending: Mapping[Curve, Distribution] = field(default_factory=dict)      # aggregated stores only
    per_socket: Mapping[Curve, Distribution] = field(default_factory=dict)   # aggregated stores only
    fit: dict[Curve, tuple[float, float]] = field(default_factory=dict)   # aggregated stores only


def _overhead(ctx: Any, d: Mapping[str, Any], variant_of: Mapping[str, str]) -> RunOverhead | None:
    sockets = int(d.get("sockets", 0) or 0)
    if d.get("sched") in ("KIST", "KISTLite") and sockets > 0:
        # labelled by the scheduler that ran, not the arm tag: runs around a switch
        return RunOverhead(str(d["sched"]), variant_of.get(ctx.run_id, BASE), ctx.fingerprint,
                           sockets, int(d.get("sock_ns", 0)) / 1000.0, int(d.get("run_ns", 0)) / 1000.0)
    return None


def _from_records(store: Any, variant_of: Mapping[str, str]) -> _Distributions:
    """Every value, from every record: exact (the differential test compares them with SQL)."""
    out = _Distributions()
    lists: dict[str, dict[Curve, list[float]]] = {"goodput": {}, "queue": {}, "kernel": {}}

    def add(which: str, ctx: Any, value: float) -> None:
        if ctx.arm not in UNATTRIBUTED:
            lists[which].setdefault(Curve(ctx.arm, variant_of.get(ctx.run_id, BASE)), []).append(value)

    for ctx, rec in store.records("BW"):
        written = rec.data.get("written")
        if isinstance(written, int | float):
            add("goodput", ctx, float(written))
    for ctx, rec in store.records(QTIME):
        _run, text = _qtime_cells(dict(rec.data))
        for cell in parse_cells(text):
            if cell.queue_ns is not None:
                add("queue", ctx, cell.queue_ns / 1e6)
    for ctx, rec in store.records(KQTIME):
        snd = rec.data.get("snd_ns")
        if isinstance(snd, int):
            add("kernel", ctx, snd / 1e6)
    for ctx, rec in store.records("KIST_OVERHEAD"):
        run = _overhead(ctx, rec.data, variant_of)
        if run is not None:
            out.overhead.append(run)
    out.goodput, out.queue, out.kernel = (lists[k] for k in ("goodput", "queue", "kernel"))
    return out


def _from_aggregates(store: Any, variant_of: Mapping[str, str]) -> _Distributions:
    """The store's per-minute histograms and sums (harness.control.aggregates), per curve."""
    from harness.control.aggregates import Histogram

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
    for ctx, rec in itertools.islice(store.records("KIST_OVERHEAD"), OVERHEAD_SAMPLE * 4):
        run = _overhead(ctx, rec.data, variant_of)
        if run is not None:
            out.overhead.append(run)
            if len(out.overhead) >= OVERHEAD_SAMPLE:
                break
    return out


def _variant_info(d: Mapping[str, object], unattributed: Mapping[str, int]) -> VariantInfo:
    name = str(d.get("variant", BASE))
    period, duration = d.get("period_s"), d.get("duration_s")
    return VariantInfo(name, str(d.get("describe", "")),
                       float(period) if isinstance(period, int | float) else None,
                       float(duration) if isinstance(duration, int | float) else None,
                       str(d.get("skipped") or ""), unattributed.get(name, 0))


def interval_ms(store_path: Path) -> float | None:
    """The KIST interval in force (IVAL of the first KIST run), for the queue-time figure's marker."""
    from harness.control.store import Store

    with Store(store_path, readonly=True) as store:
        for _ctx, rec in store.records("KIST_RUN"):
            m = re.search(r"\bSCHED=KIST(?:Lite)? .*?\bIVAL=(\d+)", rec.raw or "")
            if m:
                return float(m.group(1))
    return None


def dump(data: ReportData) -> str:
    """The loaded numbers as JSON, for tests and for people who want the raw figures."""
    return json.dumps({"downloads": len(data.downloads),
                       "goodput": {k.label: len(v) for k, v in data.goodput_Bps.items()},
                       "tor_queue": {k.label: len(v) for k, v in data.tor_queue_ms.items()},
                       "overhead_runs": len(data.overhead)}, indent=1)
