"""One run's store -> per-network, per-arm results the claims and the statistics read.

The report's reader (harness.report.read.read_store) already turns a store into every
number the report shows, per arm and condition; this module only reduces that to what the
across-network statistics need: per-event samples (TTFB/TTLB per size, Tor and kernel queue
time per cell) and one number per network (goodput, the fraction of cells queued no longer
than the run interval, the overhead slope and its fit). A large store's histograms become
``HISTOGRAM_POINTS`` quantile values, enough for the order-statistic quantiles the
intervals are built from (each is at most one bin, 4.4 %, above the exact value).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from harness.experiments.claims import NetworkResult
from harness.report.data import Distribution, ReportData, RunOverhead
from harness.store.aggregates import Histogram

HISTOGRAM_POINTS = 200
KIB = 1024


def size_label(size: int) -> str:
    """51200 -> '50KiB', 5242880 -> '5MiB': the metric names' size part."""
    if size % (1024 * KIB) == 0:
        return f"{size // (1024 * KIB)}MiB"
    if size % KIB == 0:
        return f"{size // KIB}KiB"
    return f"{size}B"


def values_of(dist: Distribution) -> list[float]:
    """A distribution's values: the list itself, or a histogram's quantiles."""
    if isinstance(dist, Histogram):
        if not dist.n:
            return []
        return [dist.quantile(i / (HISTOGRAM_POINTS - 1)) for i in range(HISTOGRAM_POINTS)]
    return [float(v) for v in dist]


def overhead_fit(overhead: Sequence[RunOverhead]) -> tuple[float, float]:
    """(us per pending socket, R^2) of TCP-info time against pending sockets, through the
    origin like the report's slope; R^2 against the mean. The slope is NaN with fewer than 3
    runs; R^2 is NaN unless pending sockets span a factor of 4 over at least 4 distinct
    values: over 1-3 sockets "linear" cannot be told from noise."""
    runs = [o for o in overhead if o.pending > 0]
    den = sum(o.pending * o.pending for o in runs)
    if len(runs) < 3 or not den:
        return math.nan, math.nan
    slope = sum(o.pending * o.tcpinfo_us for o in runs) / den
    pend = {o.pending for o in runs}
    if len(pend) < 4 or max(pend) < 4 * min(pend):
        return slope, math.nan
    ys = [o.tcpinfo_us for o in runs]
    mean = statistics.fmean(ys)
    ss_tot = sum((y - mean) ** 2 for y in ys)
    ss_res = sum((o.tcpinfo_us - slope * o.pending) ** 2 for o in runs)
    return slope, (1.0 - ss_res / ss_tot) if ss_tot else math.nan


def from_report(data: ReportData, network: str, *, condition: str | None = None) -> list[NetworkResult]:
    """Per (arm, condition) results of one network. ``condition`` names the condition of a
    run whose store has one phase (the grid runs one condition per network run); otherwise
    each stored variant is its own condition."""
    out: list[NetworkResult] = []
    for curve in data.curves():
        cond = condition if condition is not None else curve.variant
        if condition is not None and curve.variant != "base":
            continue
        samples: dict[str, list[float]] = {}
        for d in data.downloads:
            if d.arm == curve.arm and d.variant == curve.variant and d.ok:
                samples.setdefault(f"ttlb_{size_label(d.size)}", []).append(d.ttlb_s)
                samples.setdefault(f"ttfb_{size_label(d.size)}", []).append(d.ttfb_s)
        scalars: dict[str, float] = {}
        tq = values_of(data.tor_queue_ms.get(curve, []))
        kq = values_of(data.kernel_queue_ms.get(curve, []))
        gp = values_of(data.goodput_Bps.get(curve, []))
        if tq:
            samples["tor_queue_ms"] = tq
            if data.interval_ms:
                scalars["tor_queue_within_interval"] = sum(v <= data.interval_ms for v in tq) / len(tq)
        if kq:
            samples["kernel_queue_ms"] = kq
        if gp:
            scalars["goodput_kib_s"] = statistics.fmean(gp) / KIB
        slope, r2 = overhead_fit([o for o in data.overhead if o.arm == curve.arm and o.variant == curve.variant])
        if not math.isnan(slope):
            scalars["overhead_us_per_socket"] = slope
            scalars["overhead_fit_r2"] = r2
        out.append(NetworkResult(network, cond, curve.arm.lower(), samples, scalars))
    return out
