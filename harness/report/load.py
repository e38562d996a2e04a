"""Store → ReportData: the numbers behind every figure, read from the collector's store.

Works on any store: one from `kist-harness run` (downloads, every relay, both arms) or
one a relay operator collected on a live relay (no downloads: those panels are skipped).
A run's store holds one ``variant`` record per traffic phase (harness.runjob), tying the
phase's run id to its load/loss variant; records of other run ids count as the base.
"""

from __future__ import annotations

import json
import platform
import re
from collections.abc import Mapping
from pathlib import Path

from harness.report.model import (
    BASE,
    Curve,
    DiffSummary,
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


def load(store_path: Path, *, title: str | None = None, environment: Mapping[str, str] | None = None,
         diff: DiffSummary | None = None, notes: tuple[str, ...] = ()) -> ReportData:
    from harness.control.store import Store
    from harness.queuetimes import QTIME, _qtime_cells, parse_cells

    downloads: list[Download] = []
    goodput: dict[Curve, list[float]] = {}
    queue: dict[Curve, list[float]] = {}
    kernel: dict[Curve, list[float]] = {}
    overhead: list[RunOverhead] = []
    env: dict[str, str] = dict(environment or {})
    unattributed: dict[str, int] = {}
    with Store(store_path, readonly=True) as store:
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
        for ctx, rec in store.records("BW"):
            if ctx.arm in UNATTRIBUTED:
                continue
            written = rec.data.get("written")
            if isinstance(written, int | float):
                goodput.setdefault(Curve(ctx.arm, variant_of.get(ctx.run_id, BASE)), []).append(float(written))
        for ctx, rec in store.records(QTIME):
            if ctx.arm in UNATTRIBUTED:
                continue
            _run, text = _qtime_cells(dict(rec.data))
            curve = Curve(ctx.arm, variant_of.get(ctx.run_id, BASE))
            for cell in parse_cells(text):
                if cell.queue_ns is not None:
                    queue.setdefault(curve, []).append(cell.queue_ns / 1e6)
        for ctx, rec in store.records(KQTIME):
            snd = rec.data.get("snd_ns")
            if ctx.arm not in UNATTRIBUTED and isinstance(snd, int):
                kernel.setdefault(Curve(ctx.arm, variant_of.get(ctx.run_id, BASE)), []).append(snd / 1e6)
        for ctx, rec in store.records("KIST_OVERHEAD"):
            d = rec.data
            sockets = int(d.get("sockets", 0) or 0)
            if d.get("sched") in ("KIST", "KISTLite") and sockets > 0:
                # labelled by the scheduler that ran, not the arm tag: runs around a switch
                overhead.append(RunOverhead(str(d["sched"]), variant_of.get(ctx.run_id, BASE), ctx.fingerprint,
                                            sockets, int(d.get("sock_ns", 0)) / 1000.0,
                                            int(d.get("run_ns", 0)) / 1000.0))
        for _id, ctx in store.contexts():
            if ctx.tor_version not in ("unknown", "") and "tor" not in env:
                env["tor"] = ctx.tor_version
            if ctx.patch_hash not in ("none", "") and "patch hash" not in env:
                env["patch hash"] = ctx.patch_hash
        kinds = store.kinds()
    env.setdefault("kernel", platform.release())
    env["store"] = f"{store_path} ({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))})"
    variants = tuple(_variant_info(d, unattributed) for d in phases.values())
    if not variants and unattributed:
        variants = (VariantInfo(BASE, unattributed=unattributed.get(BASE, 0)),)
    extra = list(notes) + [v.skipped for v in variants if v.skipped]
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
    if not queue:
        extra.append("No KIST_QTIME events: Tor queue times unavailable (unpatched relay or not subscribed).")
    if overhead and kinds.get("KIST_RUN"):
        extra.append("Scheduler overhead was measured while KIST_RUN tracing was on, which records every socket "
                     "read inside the timed loop; subscribe to KIST_OVERHEAD alone for the untraced cost.")
    if not kernel:
        extra.append("No KIST_KQTIME events: kernel queue time unavailable (a relay without patch 0004, not "
                     "subscribed, or a kernel that refuses SO_TIMESTAMPING).")
    return ReportData(title or f"kist-harness report: {store_path.name}", env, tuple(downloads), goodput, queue,
                      kernel, tuple(overhead), diff, tuple(extra), variants)


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
