"""What a report shows, as plain records: read from a store (read.py), rendered by page.py.

Keeping this layer between the store and the figures lets the report's numbers be
tested against the store directly (tests compare these records with SQL counts), and
lets a store from a live relay, which has no downloads, render the panels it can.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from harness.checks.differential import DiffSummary
from harness.store.aggregates import Histogram
from harness.store.typed import PhaseRecord

if TYPE_CHECKING:
    pass

# The values behind a curve: the raw values, or (for a store too large to read record by
# record) the store's per-minute log-binned histogram of them, harness.store.aggregates.
Distribution = Sequence[float] | Histogram

PAPER_US_PER_PENDING_SOCKET = 1.08  # "Tor's Been KIST", Section 5.2
PAPER_MEDIAN_PENDING = 23
BASE = "base"  # the condition every run starts with (harness.config.BASE_VARIANT)


@dataclass(frozen=True)
class Curve:
    """One line of a figure: an arm under a variant (the paper's KIST/Vanilla x load lines)."""

    arm: str
    variant: str = BASE

    @property
    def label(self) -> str:
        return curve_label(self.arm, self.variant)


@dataclass(frozen=True)
class VariantInfo:
    """A traffic phase as the store records it (its condition, period, why it was skipped),
    and how many of its downloads ran across an arm switch (counted from the store)."""

    phase: PhaseRecord
    unattributed: int = 0

    @property
    def name(self) -> str:
        return self.phase.variant


@dataclass(frozen=True)
class Download:
    """One client download through the network: the paper's TTFB/TTLB unit."""

    arm: str
    variant: str
    client: str
    size: int
    ttfb_s: float
    ttlb_s: float
    ok: bool


@dataclass(frozen=True)
class RunOverhead:
    """One scheduler run's cost: the paper's Section 5.2 measurement."""

    arm: str
    variant: str
    relay: str
    pending: int
    tcpinfo_us: float
    run_us: float


@dataclass(frozen=True)
class ReportData:
    title: str
    environment: Mapping[str, str]
    downloads: tuple[Download, ...] = ()
    goodput_Bps: Mapping[Curve, Distribution] = field(default_factory=dict)  # per relay-second
    tor_queue_ms: Mapping[Curve, Distribution] = field(default_factory=dict)
    kernel_queue_ms: Mapping[Curve, Distribution] = field(default_factory=dict)
    overhead: tuple[RunOverhead, ...] = ()  # every run, or a bounded sample of a large store's
    diff: DiffSummary | None = None
    notes: tuple[str, ...] = ()
    variants: tuple[VariantInfo, ...] = ()  # in run order, base first; empty for a store without phases
    # A large store's every-run figures, from its aggregates (empty: computed from overhead)
    pending_runs: Mapping[Curve, Distribution] = field(default_factory=dict)
    us_per_socket_runs: Mapping[Curve, Distribution] = field(default_factory=dict)
    overhead_fit: Mapping[Curve, tuple[float, float]] = field(default_factory=dict)  # (sum p*t, sum p*p)
    interval_ms: float | None = None  # the KIST interval in force: the queue-time figure's marker

    def curves(self) -> list[Curve]:
        """Every curve with data, variants in run order, arms by name."""
        found = ({Curve(d.arm, d.variant) for d in self.downloads} | set(self.goodput_Bps)
                 | set(self.tor_queue_ms) | set(self.kernel_queue_ms)
                 | {Curve(o.arm, o.variant) for o in self.overhead})
        return sorted(found, key=lambda c: (self.variant_names().index(c.variant), c.arm))

    def variant_names(self) -> list[str]:
        """Variants in run order: the recorded phases, then any other seen in the data."""
        names = [BASE] + [v.name for v in self.variants if v.name != BASE]
        seen = {d.variant for d in self.downloads} | {o.variant for o in self.overhead} | {
            c.variant for m in (self.goodput_Bps, self.tor_queue_ms, self.kernel_queue_ms) for c in m}
        return names + sorted(seen - set(names))

    def ordered(self, curves: Mapping[Curve, Distribution]) -> dict[str, Distribution]:
        """label -> values, in curve order: what a figure and a table draw."""
        order = {c: i for i, c in enumerate(self.curves())}
        return {c.label: curves[c] for c in sorted(curves, key=lambda c: order.get(c, len(order)))}


def curve_label(arm: str, variant: str) -> str:
    """The legend label of an arm in a load/loss variant (the paper's line colours)."""
    return arm if variant in ("", BASE) else f"{arm} {variant}"


def group(values: Sequence[tuple[Curve, float]]) -> dict[Curve, list[float]]:
    out: dict[Curve, list[float]] = {}
    for curve, value in values:
        out.setdefault(curve, []).append(value)
    return out


def downloads_by_size(data: ReportData, metric: str) -> dict[int, dict[Curve, list[float]]]:
    """size -> curve -> seconds (ttfb or ttlb) of the successful downloads."""
    out: dict[int, dict[Curve, list[float]]] = {}
    for d in data.downloads:
        if d.ok:
            value = d.ttfb_s if metric == "ttfb" else d.ttlb_s
            out.setdefault(d.size, {}).setdefault(Curve(d.arm, d.variant), []).append(value)
    return out


def pending(data: ReportData) -> Mapping[Curve, Distribution]:
    if data.pending_runs:
        return data.pending_runs
    return group([(Curve(o.arm, o.variant), float(o.pending)) for o in data.overhead])


def us_per_socket(data: ReportData) -> Mapping[Curve, Distribution]:
    if data.us_per_socket_runs:
        return data.us_per_socket_runs
    return group([(Curve(o.arm, o.variant), o.tcpinfo_us / o.pending) for o in data.overhead if o.pending])


def scaled(values: Distribution, factor: float) -> Distribution:
    """The same values in another unit (e.g. B/s -> MB/s)."""
    return values.scaled(factor) if isinstance(values, Histogram) else [v * factor for v in values]


def pooled(parts: Sequence[Distribution]) -> Distribution:
    """Several curves' values as one (all histograms, or all raw values)."""
    hists = [p for p in parts if isinstance(p, Histogram)]
    if hists:
        out = hists[0]
        for h in hists[1:]:
            out = out.merged(h)
        return out
    return [v for p in parts if not isinstance(p, Histogram) for v in p]


@dataclass(frozen=True)
class ArmRow:
    """One arm under one variant: the per-variant table's row (medians; NaN where no data)."""

    variant: str
    arm: str
    downloads_ok: int
    downloads_failed: int
    ttlb_median_s: Mapping[int, float]   # download size -> median TTLB of the successful ones
    goodput_median_MBps: float
    tor_queue_median_ms: float
    kernel_queue_median_ms: float
    pending_median: float


def arm_rows(data: ReportData) -> list[ArmRow]:
    """KIST against Vanilla within each variant: the numbers the per-variant table shows."""
    sizes = sorted({d.size for d in data.downloads})
    ttlb = downloads_by_size(data, "ttlb")
    pend = pending(data)
    rows = []
    for c in data.curves():
        mine = [d for d in data.downloads if (d.arm, d.variant) == (c.arm, c.variant)]
        rows.append(ArmRow(
            c.variant, c.arm, sum(d.ok for d in mine), sum(not d.ok for d in mine),
            {s: quantiles(ttlb.get(s, {}).get(c, [])).median for s in sizes},
            quantiles(scaled(data.goodput_Bps.get(c, []), 1e-6)).median,
            quantiles(data.tor_queue_ms.get(c, [])).median, quantiles(data.kernel_queue_ms.get(c, [])).median,
            quantiles(pend.get(c, [])).median))
    return rows


@dataclass(frozen=True)
class Quantiles:
    n: int
    median: float
    q1: float
    q3: float
    p90: float
    minimum: float
    maximum: float


def quantiles(values: Distribution) -> Quantiles:
    if isinstance(values, Histogram):  # each at most one bin (4.4 %) above the exact value
        if not values.n:
            return Quantiles(0, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan)
        return Quantiles(values.n, values.quantile(0.5), values.quantile(0.25), values.quantile(0.75),
                         values.quantile(0.9), values.edges(min(values.counts))[0],
                         values.edges(max(values.counts))[1])
    xs = sorted(values)
    if not xs:
        return Quantiles(0, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan)
    if len(xs) == 1:
        v = xs[0]
        return Quantiles(1, v, v, v, v, v, v)
    q = statistics.quantiles(xs, n=20, method="inclusive")  # 5% steps
    return Quantiles(len(xs), statistics.median(xs), q[4], q[14], q[17], xs[0], xs[-1])


def overhead_slope(data: ReportData) -> float:
    """us per pending socket over every run: from a large store's sums, else from its runs."""
    if data.overhead_fit:
        num = sum(pt for pt, _pp in data.overhead_fit.values())
        den = sum(pp for _pt, pp in data.overhead_fit.values())
        return num / den if den else math.nan
    return us_per_pending_socket(data.overhead)


def us_per_pending_socket(overhead: Sequence[RunOverhead]) -> float:
    """Least-squares slope through the origin of TCP-info time against pending sockets."""
    num = sum(o.pending * o.tcpinfo_us for o in overhead)
    den = sum(o.pending * o.pending for o in overhead)
    return num / den if den else math.nan
