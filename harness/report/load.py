"""Store → ReportData: the numbers behind every figure, read from the collector's store.

Works on any store: one from `kist-harness run` (downloads, every relay, both arms) or
one a relay operator collected on a live relay (no downloads: those panels are skipped).
"""

from __future__ import annotations

import json
import platform
import re
from collections.abc import Mapping
from pathlib import Path

from harness.report.model import DiffSummary, Download, ReportData, RunOverhead, curve_label

DOWNLOAD = "download"
# Arms no curve is drawn for: records from before the first switch ("-") and downloads that
# ran across an arm switch ("straddle", harness.runjob).
UNATTRIBUTED = frozenset({"-", "straddle"})


def load(store_path: Path, *, title: str | None = None, environment: Mapping[str, str] | None = None,
         diff: DiffSummary | None = None, notes: tuple[str, ...] = ()) -> ReportData:
    from harness.control.store import Store
    from harness.queuetimes import QTIME, _qtime_cells, parse_cells

    downloads: list[Download] = []
    goodput: dict[str, list[float]] = {}
    queue: dict[str, list[float]] = {}
    overhead: list[RunOverhead] = []
    env: dict[str, str] = dict(environment or {})
    unattributed = 0
    with Store(store_path, readonly=True) as store:
        for ctx, rec in store.records(DOWNLOAD):
            d = rec.data
            if ctx.arm in UNATTRIBUTED:
                unattributed += 1
                continue
            ok = d.get("outcome") == "ok" and d.get("ttlb_s") is not None
            downloads.append(Download(ctx.arm, "base", str(d.get("client", ctx.fingerprint)), int(d["size"]),
                                      float(d.get("ttfb_s") or float("nan")), float(d.get("ttlb_s") or float("nan")),
                                      ok))
        for ctx, rec in store.records("BW"):
            if ctx.arm in UNATTRIBUTED:
                continue
            written = rec.data.get("written")
            if isinstance(written, int | float):
                goodput.setdefault(curve_label(ctx.arm, "base"), []).append(float(written))
        for ctx, rec in store.records(QTIME):
            if ctx.arm in UNATTRIBUTED:
                continue
            _run, text = _qtime_cells(dict(rec.data))
            label = curve_label(ctx.arm, "base")
            for cell in parse_cells(text):
                if cell.queue_ns is not None:
                    queue.setdefault(label, []).append(cell.queue_ns / 1e6)
        for ctx, rec in store.records("KIST_OVERHEAD"):
            d = rec.data
            sockets = int(d.get("sockets", 0) or 0)
            if d.get("sched") in ("KIST", "KISTLite") and sockets > 0:
                # labelled by the scheduler that ran, not the arm tag: runs around a switch
                overhead.append(RunOverhead(str(d["sched"]), "base", ctx.fingerprint, sockets,
                                            int(d.get("sock_ns", 0)) / 1000.0, int(d.get("run_ns", 0)) / 1000.0))
        for _id, ctx in store.contexts():
            if ctx.tor_version not in ("unknown", "") and "tor" not in env:
                env["tor"] = ctx.tor_version
            if ctx.patch_hash not in ("none", "") and "patch hash" not in env:
                env["patch hash"] = ctx.patch_hash
        kinds = store.kinds()
    env.setdefault("kernel", platform.release())
    env["store"] = f"{store_path} ({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))})"
    extra = list(notes)
    if unattributed:
        extra.append(f"{unattributed} downloads ran across an arm switch and are not attributed to an arm.")
    if not downloads:
        extra.append("No downloads in this store (a live relay's, or traffic did not run): client panels skipped.")
    if not queue:
        extra.append("No KIST_QTIME events: Tor queue times unavailable (unpatched relay or not subscribed).")
    if overhead and kinds.get("KIST_RUN"):
        extra.append("Scheduler overhead was measured while KIST_RUN tracing was on, which records every socket "
                     "read inside the timed loop; subscribe to KIST_OVERHEAD alone for the untraced cost.")
    extra.append("Kernel queue time is not measured: the patch does not add SO_TIMESTAMPING (see "
                 "docs/control-events.md, 'Not provided').")
    return ReportData(title or f"kist-harness report: {store_path.name}", env, tuple(downloads), goodput, queue,
                      {}, tuple(overhead), diff, tuple(extra))


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
    return json.dumps({"downloads": len(data.downloads), "goodput": {k: len(v) for k, v in data.goodput_Bps.items()},
                       "tor_queue": {k: len(v) for k, v in data.tor_queue_ms.items()},
                       "overhead_runs": len(data.overhead)}, indent=1)
