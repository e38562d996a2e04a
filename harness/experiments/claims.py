"""The paper's claims as data-driven checks over per-network results, each judged at 95 %.

A claim is a small frozen object with ``judge(results) -> Verdict``; the verdict is
*reproduced* when the interval lies on the claim's side, *refuted* when it lies on the other
side, *inconclusive* when it straddles the line (or there are too few networks), and *no data*
when the metric was not measured. Every interval is across independently sampled networks
(harness.experiments.stats): one value per network and arm, KIST and Vanilla paired by the
network they ran on. The checks know nothing about how results were collected: the grid, a
hand-written scenario or a test's synthetic numbers all arrive as ``NetworkResult``.
"""

from __future__ import annotations

import enum
import html
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from harness.experiments.stats import (
    CONFIDENCE,
    Interval,
    mean_interval,
    order_quantile,
    welch_difference,
)

KIST = "kist"
VANILLA = "vanilla"
LOAD_CONDITIONS = ("low-load", "base", "high-load")
LOSS_CONDITIONS = ("no-loss", "base", "high-loss")
ALL_CONDITIONS = ("base", "low-load", "high-load", "no-loss", "high-loss")


@dataclass(frozen=True)
class NetworkResult:
    """What one arm measured on one sampled network under one condition.

    ``samples``: per-event values of a metric (``ttlb_320KiB`` in s, ``kernel_queue_ms``...);
    ``scalars``: one number per network (``goodput_kib_s``, ``overhead_us_per_socket``...)."""

    network: str
    condition: str
    arm: str
    samples: Mapping[str, Sequence[float]] = field(default_factory=dict)
    scalars: Mapping[str, float] = field(default_factory=dict)


class Outcome(enum.Enum):
    REPRODUCED = "reproduced"
    REFUTED = "refuted"
    INCONCLUSIVE = "inconclusive"
    NO_DATA = "no data"


@dataclass(frozen=True)
class Verdict:
    """One row of the claims table."""

    claim: str            # short id
    text: str             # the paper's claim in words
    outcome: Outcome
    numbers: str          # the estimates that decided it, with intervals and k
    rule: str             # what reproduces / refutes it
    conditions: tuple[str, ...]


def _value(r: NetworkResult, metric: str, quantile: float | None) -> float:
    """One network's number for a metric: a quantile of its samples, or its scalar."""
    if quantile is None:
        return float(r.scalars.get(metric, math.nan))
    vals = r.samples.get(metric, ())
    return order_quantile(vals, quantile) if len(vals) else math.nan


def _per_network(results: Sequence[NetworkResult], condition: str, arm: str, metric: str,
                 quantile: float | None) -> dict[str, float]:
    out = {}
    for r in results:
        if r.condition == condition and r.arm == arm:
            v = _value(r, metric, quantile)
            if not math.isnan(v):
                out[r.network] = v
    return out


def _diffs(results: Sequence[NetworkResult], condition: str, metric: str, quantile: float | None) -> dict[str, float]:
    """KIST - Vanilla per network (networks where both arms measured the metric)."""
    k = _per_network(results, condition, KIST, metric, quantile)
    v = _per_network(results, condition, VANILLA, metric, quantile)
    return {n: k[n] - v[n] for n in sorted(k) if n in v}


def _ran(results: Sequence[NetworkResult], conditions: Sequence[str]) -> tuple[str, ...]:
    """The claim's conditions that the results have (a grid may run a subset)."""
    present = {r.condition for r in results}
    return tuple(c for c in conditions if c in present)


def _part(cond: str, iv: Interval, unit: str = "") -> str:
    return f"{cond}: {iv.text()}{unit} (k={iv.k})" if iv.k >= 2 else f"{cond}: {iv.text()}"


def _combine(outcomes: Sequence[Outcome]) -> Outcome:
    """All parts reproduced -> reproduced; any refuted -> refuted; no data anywhere -> no data."""
    if not outcomes or all(o is Outcome.NO_DATA for o in outcomes):
        return Outcome.NO_DATA
    if any(o is Outcome.REFUTED for o in outcomes):
        return Outcome.REFUTED
    if all(o is Outcome.REPRODUCED for o in outcomes):
        return Outcome.REPRODUCED
    return Outcome.INCONCLUSIVE


def _judge_interval(iv: Interval, good_below: float | None, good_above: float | None) -> Outcome:
    """Reproduced when the whole interval is on the good side of every bound given, refuted
    when the whole interval is past one of them."""
    if iv.k == 0:
        return Outcome.NO_DATA
    if iv.k < 2 or math.isnan(iv.low):
        return Outcome.INCONCLUSIVE
    if (good_below is not None and iv.low > good_below) or (good_above is not None and iv.high < good_above):
        return Outcome.REFUTED
    if (good_below is None or iv.high < good_below) and (good_above is None or iv.low > good_above):
        return Outcome.REPRODUCED
    return Outcome.INCONCLUSIVE


def _lower_is_better(iv: Interval, sign: float) -> Interval:
    """The interval in units where lower is better (sign -1 flips a higher-is-better metric)."""
    if sign > 0:
        return iv
    return Interval(-iv.mean, -iv.high, -iv.low, iv.k, iv.confidence)


def _name(metric: str, quantile: float | None) -> str:
    return metric if quantile is None else f"{metric} P{quantile * 100:g}"


@dataclass(frozen=True)
class ArmDifference:
    """KIST - Vanilla of a metric, paired by network, in each condition.

    ``better = "lower"`` (times) or ``"higher"`` (goodput). ``strict``: KIST must be
    significantly better; otherwise it must be no worse than Vanilla by more than
    ``margin`` (a fraction of Vanilla's mean: non-inferiority) and is refuted only when it is
    significantly worse by more than that."""

    claim: str
    text: str
    metric: str
    quantile: float | None
    conditions: tuple[str, ...]
    better: str = "lower"
    strict: bool = True
    margin: float = 0.0

    def judge(self, results: Sequence[NetworkResult], confidence: float = CONFIDENCE) -> Verdict:
        sign = 1.0 if self.better == "lower" else -1.0
        outcomes, parts = [], []
        conds = _ran(results, self.conditions)
        for cond in conds:
            d = _diffs(results, cond, self.metric, self.quantile)
            iv = mean_interval(list(d.values()), confidence)
            van = _per_network(results, cond, VANILLA, self.metric, self.quantile)
            m = 0.0 if self.strict or not van else self.margin * abs(statistics.fmean(van.values()))
            s = _lower_is_better(iv, sign)
            outcomes.append(_judge_interval(s, 0.0, None) if self.strict else _non_inferior(s, m))
            parts.append(_part(cond, iv))
        if self.strict:
            rule = f"KIST - Vanilla of {_name(self.metric, self.quantile)}: interval {'<' if sign > 0 else '>'} 0"
        else:
            rule = (f"KIST - Vanilla of {_name(self.metric, self.quantile)}: interval "
                    f"{'below +' if sign > 0 else 'above -'}{self.margin:.0%} of Vanilla -> no worse; "
                    f"entirely {'above' if sign > 0 else 'below'} it -> worse")
        return Verdict(self.claim, self.text, _combine(outcomes), "; ".join(parts) or "not run",
                       rule, conds or self.conditions)


def _non_inferior(s: Interval, margin: float) -> Outcome:
    """Non-inferiority in lower-is-better units: reproduced when high < margin, refuted when
    low > margin (significantly worse by more than the margin)."""
    if s.k == 0:
        return Outcome.NO_DATA
    if s.k < 2 or math.isnan(s.low):
        return Outcome.INCONCLUSIVE
    if s.low > margin:
        return Outcome.REFUTED
    if s.high < margin or (margin == 0.0 and s.high <= 0.0):
        return Outcome.REPRODUCED
    return Outcome.INCONCLUSIVE


@dataclass(frozen=True)
class Trend:
    """KIST's advantage grows from one condition to another: (KIST - Vanilla) at ``to``
    minus (KIST - Vanilla) at ``frm``, better in the direction ``better``.

    Paired by network when both conditions ran on the same sampled networks, otherwise a
    Welch interval between the two sets of networks."""

    claim: str
    text: str
    metric: str
    quantile: float | None
    frm: str
    to: str
    better: str = "lower"

    def judge(self, results: Sequence[NetworkResult], confidence: float = CONFIDENCE) -> Verdict:
        a = _diffs(results, self.frm, self.metric, self.quantile)
        b = _diffs(results, self.to, self.metric, self.quantile)
        shared = sorted(set(a) & set(b))
        if len(shared) >= 2 and len(shared) >= min(len(a), len(b)):
            iv = mean_interval([b[n] - a[n] for n in shared], confidence)
            how = "paired by network"
        else:
            iv = welch_difference(list(b.values()), list(a.values()), confidence)
            how = "Welch, separate networks"
        sign = 1.0 if self.better == "lower" else -1.0
        s = _lower_is_better(iv, sign)
        outcome = _judge_interval(s, 0.0, None) if a and b else Outcome.NO_DATA
        if a and b:
            numbers = f"change of KIST - Vanilla from {self.frm} to {self.to}: {iv.text()} (k={iv.k}, {how})"
        else:
            numbers = f"not run: needs both {self.frm} and {self.to}"
        rule = (f"(KIST - Vanilla)[{self.to}] - (KIST - Vanilla)[{self.frm}] of {_name(self.metric, self.quantile)}: "
                f"interval {'<' if sign > 0 else '>'} 0")
        return Verdict(self.claim, self.text, outcome, numbers, rule, (self.frm, self.to))


@dataclass(frozen=True)
class ArmLevel:
    """One arm's per-network scalar lies in [low, high] (either may be None) in each condition."""

    claim: str
    text: str
    metric: str
    arm: str
    conditions: tuple[str, ...]
    low: float | None = None
    high: float | None = None
    unit: str = ""

    def judge(self, results: Sequence[NetworkResult], confidence: float = CONFIDENCE) -> Verdict:
        outcomes, parts = [], []
        conds = _ran(results, self.conditions)
        for cond in conds:
            iv = mean_interval(list(_per_network(results, cond, self.arm, self.metric, None).values()), confidence)
            outcomes.append(_judge_interval(iv, self.high, self.low))
            parts.append(_part(cond, iv, self.unit))
        bounds = " and ".join(b for b in ((f">= {self.low:g}{self.unit}" if self.low is not None else ""),
                                          (f"<= {self.high:g}{self.unit}" if self.high is not None else "")) if b)
        rule = f"{self.arm} {self.metric}: interval {bounds} -> reproduced; entirely outside -> refuted"
        return Verdict(self.claim, self.text, _combine(outcomes), "; ".join(parts) or "not run",
                       rule, conds or self.conditions)


@dataclass(frozen=True)
class AllOf:
    """A claim made of several checks: reproduced only when every part is."""

    claim: str
    text: str
    parts: tuple[ArmDifference | Trend | ArmLevel, ...]

    def judge(self, results: Sequence[NetworkResult], confidence: float = CONFIDENCE) -> Verdict:
        vs = [p.judge(results, confidence) for p in self.parts]
        conds = tuple(dict.fromkeys(c for v in vs for c in v.conditions))
        return Verdict(self.claim, self.text, _combine([v.outcome for v in vs]),
                       " | ".join(f"{v.claim}: {v.outcome.value}: {v.numbers}" for v in vs),
                       " AND ".join(v.rule for v in vs), conds)


Claim = ArmDifference | Trend | ArmLevel | AllOf

# "about 1 us" per pending socket: within a factor of 4 either way.
OVERHEAD_US_BAND = (0.25, 4.0)

PAPER_CLAIMS: tuple[Claim, ...] = (
    ArmDifference("kernel-queue", "Kernel queue time is lower with KIST (sec. 4.3, Fig. 3e/4e)",
                  "kernel_queue_ms", 0.5, ALL_CONDITIONS),
    ArmLevel("tor-queue", "Under KIST, Tor queue time is <= the run interval for >= 80 % of cells (Fig. 4f)",
             "tor_queue_within_interval", KIST, ALL_CONDITIONS, low=0.8),
    AllOf("load", "KIST is no worse than Vanilla, and better for low-volume downloads as load rises (Fig. 3a-c)", (
        ArmDifference("no-worse", "no worse at every load", "ttlb_320KiB", 0.5, LOAD_CONDITIONS,
                      strict=False, margin=0.05),
        Trend("gain-grows", "gain grows with load", "ttlb_320KiB", 0.5, "low-load", "high-load"),
        ArmDifference("better-high", "better at high load", "ttlb_320KiB", 0.5, ("high-load",)),
    )),
    AllOf("loss", "KIST's advantage for low-volume downloads grows as loss rises (Fig. 4a-b)", (
        Trend("gain-grows", "gain grows with loss", "ttlb_320KiB", 0.5, "no-loss", "high-loss"),
        ArmDifference("better-high", "better at high loss", "ttlb_320KiB", 0.5, ("high-loss",)),
    )),
    ArmDifference("goodput", "Relay goodput is not lower with KIST (Fig. 3d/4d)", "goodput_kib_s", None,
                  ALL_CONDITIONS, better="higher", strict=False, margin=0.05),
    AllOf("overhead", "KIST's per-socket overhead is linear in pending sockets, about 1 us each (sec. 5.2)", (
        ArmLevel("slope", "slope", "overhead_us_per_socket", KIST, ("base",), *OVERHEAD_US_BAND, unit=" us"),
        ArmLevel("linear", "linear fit", "overhead_fit_r2", KIST, ("base",), low=0.8),
    )),
)


def judge_all(results: Sequence[NetworkResult], claims: Sequence[Claim] = PAPER_CLAIMS,
              confidence: float = CONFIDENCE) -> list[Verdict]:
    """Every claim's verdict, in order."""
    return [c.judge(results, confidence) for c in claims]


def markdown_table(verdicts: Sequence[Verdict]) -> str:
    """The claims table for the README and the terminal."""
    rows = ["| claim | verdict (95 %) | numbers: mean [95 % interval] over networks | rule | conditions |",
            "| --- | --- | --- | --- | --- |"]
    for v in verdicts:
        cells = (v.text, f"**{v.outcome.value}**", v.numbers, v.rule, ", ".join(v.conditions))
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows) + "\n"


def html_table(verdicts: Sequence[Verdict]) -> str:
    """The claims table for the report page (classes name the outcome, for colouring)."""
    out = ['<table class="claims"><thead><tr><th>claim</th><th>verdict (95 %)</th>'
           "<th>numbers: mean [95 % interval] over networks</th><th>rule</th><th>conditions</th></tr></thead><tbody>"]
    for v in verdicts:
        cls = v.outcome.value.replace(" ", "-")
        out.append(f'<tr class="{cls}"><td>{html.escape(v.text)}</td><td><b>{html.escape(v.outcome.value)}</b></td>'
                   f"<td>{html.escape(v.numbers)}</td><td>{html.escape(v.rule)}</td>"
                   f"<td>{html.escape(', '.join(v.conditions))}</td></tr>")
    out.append("</tbody></table>")
    return "\n".join(out) + "\n"
