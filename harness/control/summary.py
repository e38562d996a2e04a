"""Per-arm A/B summary from a store: period means, confidence intervals, significance.

Each A/B period (from one ARM switch record to the next) contributes one mean per metric;
the first ``settle_s`` seconds (at most a quarter) of a period are skipped, since events tor queued before
the SETCONF arrive after it. Aggregation runs in SQL over the (kind, ts) index, so a
day of records summarises without loading it into Python.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass

from harness.control.records import Kind
from harness.control.stats import bootstrap_ci, bootstrap_diff_ci, mann_whitney, welch_t
from harness.control.store import Store


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str
    agg: str         # SQL aggregate over the period's records of `kind` (columns: data)
    unit: str


def _j(field: str) -> str:
    return f"json_extract(data, '$.{field}')"


METRICS = (
    Metric("goodput", "BW", f"avg({_j('written')})", "B/s"),
    # the patch's KIST_OVERHEAD (docs/control-events.md): the paper's section 5.2 numbers
    Metric("pending_sockets_per_run", "KIST_OVERHEAD", f"avg({_j('pending')})", "sockets"),
    Metric("run_duration", "KIST_OVERHEAD", f"avg({_j('run_ns')} / 1000.0)", "us"),
    Metric("tcpinfo_per_socket", "KIST_OVERHEAD",
           f"sum({_j('sock_ns')}) / 1000.0 / nullif(sum({_j('sockets')}), 0)", "us"),
    Metric("cells_per_run", "KIST_OVERHEAD", f"avg({_j('cells')})", "cells"),
    # circuit-queue time from stock tor's CELL_STATS (testing networks only): ms per cell
    Metric("tor_queue_time_cellstats", "CELL_STATS",
           f"1.0 * sum({_j('outbound_ms')} + {_j('inbound_ms')}) / "
           f"nullif(sum({_j('outbound_cells')} + {_j('inbound_cells')}), 0)", "ms"),
)


@dataclass(frozen=True)
class Period:
    arm: str
    start: float
    end: float


@dataclass(frozen=True)
class ArmStats:
    metric: str
    arm: str
    periods: int
    mean: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class Comparison:
    metric: str
    arm_a: str
    arm_b: str
    diff: float
    ci_low: float
    ci_high: float
    welch_p: float
    mann_whitney_p: float


def periods(store: Store, run_id: str) -> list[Period]:
    """A/B periods of a run, from its ARM switch records to the next switch or the end."""
    rows = store.db.execute(
        "SELECT ts, kind, data FROM records_full WHERE run_id=? AND kind IN (?, ?) ORDER BY ts",
        (run_id, str(Kind.ARM), str(Kind.END))).fetchall()
    out: list[Period] = []
    current: tuple[str, float] | None = None
    for ts, kind, data in rows:
        fields = json.loads(data)
        arm = fields.get("arm") if kind == Kind.ARM else None
        if kind == Kind.END or arm is not None or "restored" in fields:
            if current is not None:
                out.append(Period(current[0], current[1], ts))
            current = (arm, ts) if arm is not None else None
    if current is not None:
        out.append(Period(current[0], current[1], math.inf))
    return out


def period_means(store: Store, run_id: str, metric: Metric, settle_s: float) -> dict[str, list[float]]:
    """arm → one mean per period that had samples."""
    ctx_ids = [cid for cid, ctx in store.contexts() if ctx.run_id == run_id]
    if not ctx_ids:
        return {}
    marks = ",".join("?" * len(ctx_ids))
    sql = (f"SELECT {metric.agg}, count(*) FROM records WHERE kind=? AND ts>=? AND ts<? "
           f"AND ctx IN ({marks})")
    out: dict[str, list[float]] = {}
    for p in periods(store, run_id):
        settle = min(settle_s, (p.end - p.start) / 4)  # short test periods keep most of their data
        avg, n = store.db.execute(sql, (metric.kind, p.start + settle, p.end, *ctx_ids)).fetchone()
        if n and avg is not None:
            out.setdefault(p.arm, []).append(float(avg))
    return out


def summarize(store: Store, run_id: str, *, settle_s: float = 2.0, seed: int = 0
              ) -> tuple[list[ArmStats], list[Comparison]]:
    """Per-arm means with bootstrap CIs, and each pair of arms compared (Welch, Mann-Whitney)."""
    arm_stats: list[ArmStats] = []
    comparisons: list[Comparison] = []
    for metric in METRICS:
        by_arm = period_means(store, run_id, metric, settle_s)
        for arm, values in by_arm.items():
            lo, hi = bootstrap_ci(values, seed=seed)
            arm_stats.append(ArmStats(metric.name, arm, len(values), statistics.fmean(values), lo, hi))
        arms = sorted(by_arm)
        for i, a in enumerate(arms):
            for b in arms[i + 1:]:
                va, vb = by_arm[a], by_arm[b]
                lo, hi = bootstrap_diff_ci(va, vb, seed=seed)
                comparisons.append(Comparison(metric.name, a, b,
                                              statistics.fmean(va) - statistics.fmean(vb), lo, hi,
                                              welch_t(va, vb).p_value, mann_whitney(va, vb).p_value))
    return arm_stats, comparisons
