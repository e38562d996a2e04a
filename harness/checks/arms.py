"""Per-arm A/B summary from a store: per-block values, 95 % intervals with blocks as the unit.

Each A/B period (from one ARM switch record to the next) contributes one value per metric;
the first ``settle_s`` seconds (at most a quarter) of a period are skipped, since events tor
queued before the SETCONF arrive after it. Aggregation runs in SQL over the (kind, ts) index,
so a day of records summarises without loading it into Python.

The unit of every interval is the schedule's *block* (harness.control.abtest: one period of
each arm, adjacent in time, in a shuffled order), never the event or the second: events inside
a period are strongly autocorrelated (the same circuits, the same queue), so counting them as
independent makes any difference look significant.

* Per arm: the mean of its per-block values +- t(0.975, n - 1) * s / sqrt(n) over n blocks
  (harness.experiments.stats.mean_interval, the same t as the grid's intervals).
* Between two arms: a *paired* difference. In each block that measured both, d = a - b; the
  interval is the t-interval of the mean of those d. Adjacent periods share the relay's slow
  drift (time of day, the clients' load, a new consensus weight), which the within-block
  difference cancels, so the paired interval is the honest and usually much narrower one; an
  unpaired comparison would charge that drift to the noise. The p-value is the paired t-test's.
* Why a t-interval and not the bootstrap: a live A/B test has few blocks (a day of 10-minute
  periods is 72 blocks, an hour only 3), and the percentile bootstrap undercovers badly at
  n = 3..10 (its 95 % interval is about as wide as a t-interval at ~80-85 %) and is degenerate
  at n = 2. A block value is itself an average over a period's many events, so a normal model
  of it is reasonable, which is all the t-interval assumes.
* Fewer than two blocks: no interval (the summary prints "no interval (n blocks)").
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from harness.checks.stats import t_two_sided_p
from harness.experiments.stats import mean_interval
from harness.store.db import Store
from harness.store.records import BW, KIST_KQTIME, KIST_OVERHEAD, Kind


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str
    agg: str         # SQL aggregate over the period's records of `kind` (columns: data)
    unit: str


def _j(field: str) -> str:
    return f"json_extract(data, '$.{field}')"


METRICS = (
    Metric("goodput", BW, f"avg({_j('written')})", "B/s"),
    # the patch's KIST_OVERHEAD (docs/control-events.md): the paper's section 5.2 numbers
    Metric("pending_sockets_per_run", KIST_OVERHEAD, f"avg({_j('pending')})", "sockets"),
    Metric("run_duration", KIST_OVERHEAD, f"avg({_j('run_ns')} / 1000.0)", "us"),
    Metric("tcpinfo_per_socket", KIST_OVERHEAD,
           f"sum({_j('sock_ns')}) / 1000.0 / nullif(sum({_j('sockets')}), 0)", "us"),
    Metric("cells_per_run", KIST_OVERHEAD, f"avg({_j('cells')})", "cells"),
    # the patch's KIST_KQTIME (0004, opt-in: --events KIST_KQTIME): a sampled write's last
    # byte from write to device, the paper's kernel queue time; "-" (no value) is skipped
    Metric("kernel_queue_time", KIST_KQTIME, f"avg({_j('snd_ns')} / 1e6)", "ms"),
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
    block: int = -1   # the schedule's block (harness.control.abtest.Slot.block); -1: unknown


@dataclass(frozen=True)
class ArmStats:
    """One arm's metric over blocks: the mean of its per-block values and the t-interval."""

    metric: str
    arm: str
    blocks: int
    mean: float
    ci_low: float     # NaN when blocks < MIN_BLOCKS
    ci_high: float

    def ci_text(self) -> str:
        return _ci_text(self.blocks, self.ci_low, self.ci_high)


@dataclass(frozen=True)
class Comparison:
    """arm_a - arm_b, paired within blocks: the mean of the per-block differences, its
    t-interval and the paired t-test's p-value (NaN bounds and p when blocks < MIN_BLOCKS)."""

    metric: str
    arm_a: str
    arm_b: str
    blocks: int
    diff: float
    ci_low: float
    ci_high: float
    p_value: float

    def ci_text(self) -> str:
        return _ci_text(self.blocks, self.ci_low, self.ci_high)


MIN_BLOCKS = 2  # a t-interval needs at least two blocks (one degree of freedom)


def _ci_text(n: int, low: float, high: float) -> str:
    if n < MIN_BLOCKS or math.isnan(low):
        return f"no interval ({n} block{'' if n == 1 else 's'})"
    return f"95% CI [{low:.6g}, {high:.6g}]"


def periods(store: Store, run_id: str) -> list[Period]:
    """A/B periods of a run, from its ARM switch records to the next switch or the end, each
    with its block: the one the collector recorded, else counted (a block closes when an arm
    it already holds comes again, or when it holds every arm)."""
    rows = store.db.execute(
        "SELECT ts, kind, data FROM records_full WHERE run_id=? AND kind IN (?, ?) ORDER BY ts",
        (run_id, str(Kind.ARM), str(Kind.END))).fetchall()
    raw: list[tuple[str, float, float, int | None]] = []
    current: tuple[str, float, int | None] | None = None
    for ts, kind, data in rows:
        fields = json.loads(data)
        arm = fields.get("arm") if kind == Kind.ARM else None
        if kind == Kind.END or arm is not None or "restored" in fields:
            if current is not None:
                raw.append((current[0], current[1], ts, current[2]))
            block = fields.get("block")
            current = (arm, ts, block if isinstance(block, int) else None) if arm is not None else None
    if current is not None:
        raw.append((current[0], current[1], math.inf, current[2]))
    return _number_blocks(raw)


def _number_blocks(raw: list[tuple[str, float, float, int | None]]) -> list[Period]:
    n_arms = len({arm for arm, *_ in raw})
    out: list[Period] = []
    counted, seen = 0, set[str]()
    for arm, start, end, recorded in raw:
        prev = out[-1] if out else None
        if recorded is not None and prev is not None and (prev.arm, prev.block) == (arm, recorded):
            # the same switch recorded once per relay (the main job switches several): one period
            out[-1] = Period(arm, prev.start, end, recorded)
            continue
        if arm in seen or len(seen) >= n_arms:
            counted, seen = counted + 1, set()
        seen.add(arm)
        out.append(Period(arm, start, end, recorded if recorded is not None else counted))
    return out


def block_values(store: Store, run_id: str, metric: Metric, settle_s: float) -> dict[int, dict[str, float]]:
    """block -> arm -> the metric over that arm's period in the block (periods with samples)."""
    ctx_ids = [cid for cid, ctx in store.contexts() if ctx.run_id == run_id]
    if not ctx_ids:
        return {}
    marks = ",".join("?" * len(ctx_ids))
    sql = (f"SELECT {metric.agg}, count(*) FROM records WHERE kind=? AND ts>=? AND ts<? "
           f"AND ctx IN ({marks})")
    out: dict[int, dict[str, float]] = {}
    for p in periods(store, run_id):
        settle = min(settle_s, (p.end - p.start) / 4)  # short test periods keep most of their data
        avg, n = store.db.execute(sql, (metric.kind, p.start + settle, p.end, *ctx_ids)).fetchone()
        if n and avg is not None:
            # an arm met twice in one recorded block (a restart mid-block): the later period wins
            out.setdefault(p.block, {})[p.arm] = float(avg)
    return out


def period_means(store: Store, run_id: str, metric: Metric, settle_s: float) -> dict[str, list[float]]:
    """arm -> one value per period that had samples, in block order."""
    out: dict[str, list[float]] = {}
    for _block, by_arm in sorted(block_values(store, run_id, metric, settle_s).items()):
        for arm, v in by_arm.items():
            out.setdefault(arm, []).append(v)
    return out


def arm_interval(metric: str, arm: str, values: Sequence[float]) -> ArmStats:
    """Mean of one value per block +- t(0.975, n-1) * s / sqrt(n)."""
    iv = mean_interval(values)
    return ArmStats(metric, arm, iv.k, iv.mean, iv.low, iv.high)


def paired_blocks(metric: str, a: str, b: str, blocks: Mapping[int, Mapping[str, float]]) -> Comparison:
    """a - b within each block that measured both, then the t-interval over those blocks."""
    diffs = [v[a] - v[b] for _n, v in sorted(blocks.items()) if a in v and b in v]
    iv = mean_interval(diffs)
    p = math.nan
    if iv.k >= MIN_BLOCKS:
        sd = statistics.stdev(diffs)
        p = (1.0 if iv.mean == 0 else 0.0) if sd == 0 else \
            t_two_sided_p(iv.mean / (sd / math.sqrt(iv.k)), iv.k - 1)
    return Comparison(metric, a, b, iv.k, iv.mean, iv.low, iv.high, p)


def summarize(store: Store, run_id: str, *, settle_s: float = 2.0) -> tuple[list[ArmStats], list[Comparison]]:
    """Per-arm t-intervals over blocks, and each pair of arms compared paired within blocks."""
    arm_stats: list[ArmStats] = []
    comparisons: list[Comparison] = []
    for metric in METRICS:
        blocks = block_values(store, run_id, metric, settle_s)
        arms = sorted({arm for v in blocks.values() for arm in v})
        for arm in arms:
            arm_stats.append(arm_interval(metric.name, arm,
                                          [v[arm] for _n, v in sorted(blocks.items()) if arm in v]))
        for i, a in enumerate(arms):
            for b in arms[i + 1:]:
                comparisons.append(paired_blocks(metric.name, a, b, blocks))
    return arm_stats, comparisons
