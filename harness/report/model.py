"""What a report shows, as plain records: loaded from a store, rendered by page.py.

Keeping this layer between the store and the figures lets the report's numbers be
tested against the store directly (tests compare these records with SQL counts), and
lets a store from a live relay, which has no downloads, render the panels it can.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

PAPER_US_PER_PENDING_SOCKET = 1.08  # "Tor's Been KIST", Section 5.2
PAPER_MEDIAN_PENDING = 23


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
class Divergence:
    run: int
    relay: str
    index: int
    expected: str
    actual: str
    explanation: str
    reproducer: str


@dataclass(frozen=True)
class DiffSummary:
    """The differential result: how many runs and decisions matched the faithful model."""

    runs: int = 0
    decisions: int = 0
    divergences: tuple[Divergence, ...] = ()
    ideal_cells: int = 0
    ideal_cells_better_waiting: int = 0
    invariant_violations: tuple[str, ...] = ()

    @property
    def ideal_share(self) -> float:
        """Share of cells sent while a better-priority circuit waited on another channel."""
        return self.ideal_cells_better_waiting / self.ideal_cells if self.ideal_cells else math.nan


@dataclass(frozen=True)
class ReportData:
    title: str
    environment: Mapping[str, str]
    downloads: tuple[Download, ...] = ()
    goodput_Bps: Mapping[str, Sequence[float]] = field(default_factory=dict)  # curve label -> samples
    tor_queue_ms: Mapping[str, Sequence[float]] = field(default_factory=dict)
    kernel_queue_ms: Mapping[str, Sequence[float]] = field(default_factory=dict)
    overhead: tuple[RunOverhead, ...] = ()
    diff: DiffSummary | None = None
    notes: tuple[str, ...] = ()

    def labels(self) -> list[str]:
        return sorted({curve_label(d.arm, d.variant) for d in self.downloads}
                      | set(self.goodput_Bps) | set(self.tor_queue_ms) | set(self.kernel_queue_ms)
                      | {curve_label(o.arm, o.variant) for o in self.overhead})


def curve_label(arm: str, variant: str) -> str:
    """The legend label of an arm in a load/loss variant (the paper's line colours)."""
    return arm if variant in ("", "base") else f"{arm} {variant}"


def group(values: Sequence[tuple[str, float]]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for label, value in values:
        out.setdefault(label, []).append(value)
    return out


def downloads_by_size(data: ReportData, metric: str) -> dict[int, dict[str, list[float]]]:
    """size -> curve label -> seconds (ttfb or ttlb) of the successful downloads."""
    out: dict[int, dict[str, list[float]]] = {}
    for d in data.downloads:
        if d.ok:
            value = d.ttfb_s if metric == "ttfb" else d.ttlb_s
            out.setdefault(d.size, {}).setdefault(curve_label(d.arm, d.variant), []).append(value)
    return out


@dataclass(frozen=True)
class Quantiles:
    n: int
    median: float
    q1: float
    q3: float
    p90: float
    minimum: float
    maximum: float


def quantiles(values: Sequence[float]) -> Quantiles:
    xs = sorted(values)
    if not xs:
        return Quantiles(0, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan)
    if len(xs) == 1:
        v = xs[0]
        return Quantiles(1, v, v, v, v, v, v)
    q = statistics.quantiles(xs, n=20, method="inclusive")  # 5% steps
    return Quantiles(len(xs), statistics.median(xs), q[4], q[14], q[17], xs[0], xs[-1])


def us_per_pending_socket(overhead: Sequence[RunOverhead]) -> float:
    """Least-squares slope through the origin of TCP-info time against pending sockets."""
    num = sum(o.pending * o.tcpinfo_us for o in overhead)
    den = sum(o.pending * o.pending for o in overhead)
    return num / den if den else math.nan
