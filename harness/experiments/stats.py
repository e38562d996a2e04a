"""Per-quantile estimates with 95 % intervals across k sampled networks, and KIST - Vanilla
differences paired by network.

The method is tornettools' ``draw_cdf_ci`` (shadow/tornettools, ``plot_common.py``): for each
quantile q, take one value per network (the order statistic ``sorted(x)[int((n - 1) q)]``,
no interpolation, so a value is always one that was measured), then mean over the k
networks +- t(1 - alpha/2, k - 1) * s / sqrt(k), with s the sample standard deviation and an
optional measurement resolution r adding r^2 / 12 per network to the population variance
(tornettools writes the interval as t * sqrt(var_pop + sum r^2 / 12) / sqrt(k - 1), which is
t * s / sqrt(k) when r = 0).

Student's t quantiles come from inverting the t CDF (the regularised incomplete beta already
in harness.checks.stats, accurate to ~1e-12) by bisection: exact enough for any k, stdlib only,
so the experiments need no scipy (the only thing scipy would give us is ``t.ppf``). The
``statistics`` module has no t distribution, only the normal, which is 2-30 % too narrow for
k = 5..20 networks.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from harness.checks.stats import t_two_sided_p

CONFIDENCE = 0.95
# tornettools plots 1000 quantiles in [0, 0.99]; the report needs fewer.
PLOT_QUANTILES: tuple[float, ...] = tuple(i / 200 for i in range(199)) + (0.99,)


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t with df degrees of freedom (e.g. p = 0.975)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if df <= 0:
        raise ValueError(f"df must be > 0, got {df}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    target = 2.0 * (1.0 - p)  # two-sided tail mass at |t|
    lo, hi = 0.0, 1.0
    while t_two_sided_p(hi, df) > target:
        hi *= 2.0
        if hi > 1e12:
            return math.inf
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if t_two_sided_p(mid, df) > target:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * max(1.0, hi):
            break
    return (lo + hi) / 2.0


def t_factor(k: int, confidence: float = CONFIDENCE) -> float:
    """t(1 - alpha/2, k - 1): the half-width of an interval in units of s / sqrt(k)."""
    if k < 2:
        return math.nan
    return t_quantile(0.5 + confidence / 2.0, k - 1)


@dataclass(frozen=True)
class Interval:
    """A mean over k networks with its confidence interval."""

    mean: float
    low: float
    high: float
    k: int
    confidence: float = CONFIDENCE

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2.0

    def excludes(self, value: float) -> bool:
        """True when value lies outside the interval (the difference is significant)."""
        return value < self.low or value > self.high

    def text(self, fmt: str = "{:.3g}") -> str:
        """ "0.81 [0.74, 0.88]" - the way every table of the report shows an estimate."""
        if self.k == 0:
            return "no data"
        if self.k < 2:
            return f"{fmt.format(self.mean)} (k={self.k}, no interval)"
        return f"{fmt.format(self.mean)} [{fmt.format(self.low)}, {fmt.format(self.high)}]"


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE, *,
                  resolution: float = 0.0, floor: float | None = None) -> Interval:
    """Mean of one value per network +- t * s / sqrt(k); NaN bounds when k < 2.

    ``resolution``: the measurement's granularity (a 1 ms clock: 0.001); each network adds
    resolution^2 / 12 to the population variance, as tornettools does. ``floor``: clip the low bound
    (tornettools clips download times at 0)."""
    vals = [float(v) for v in values if not math.isnan(v)]
    k = len(vals)
    if k == 0:
        return Interval(math.nan, math.nan, math.nan, 0, confidence)
    m = statistics.fmean(vals)
    if k < 2:
        return Interval(m, math.nan, math.nan, k, confidence)
    # tornettools: t / sqrt(k - 1) * sqrt(var_pop + sum(r^2) / 12), i.e. t * s / sqrt(k) when r = 0
    var = statistics.pvariance(vals) + k * resolution * resolution / 12.0
    half = t_factor(k, confidence) * math.sqrt(var / (k - 1))
    low = m - half if floor is None else max(floor, m - half)
    return Interval(m, low, m + half, k, confidence)


def order_quantile(values: Sequence[float], q: float) -> float:
    """tornettools' quantile: the value at index int((n - 1) q) of the sorted values."""
    if not values:
        return math.nan
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {q}")
    s = sorted(values)
    return s[int((len(s) - 1) * q)]


def _quantiles_of(values: Sequence[float], qs: Sequence[float]) -> list[float]:
    s = sorted(values)
    n = len(s)
    return [s[int((n - 1) * q)] if n else math.nan for q in qs]


@dataclass(frozen=True)
class QuantileBand:
    """One CDF with its band: for each quantile, the interval over networks."""

    quantiles: tuple[float, ...]
    intervals: tuple[Interval, ...]

    def at(self, q: float) -> Interval:
        """The interval at quantile q (one of ``quantiles``)."""
        for qq, iv in zip(self.quantiles, self.intervals, strict=True):
            if math.isclose(qq, q):
                return iv
        raise KeyError(f"quantile {q} was not computed; computed: {self.quantiles[:3]}...")


def quantile_band(per_network: Sequence[Sequence[float]], quantiles: Sequence[float] = PLOT_QUANTILES,
                  confidence: float = CONFIDENCE, *, resolution: float = 0.0,
                  floor: float | None = 0.0) -> QuantileBand:
    """For each quantile, mean over networks of that network's quantile, with its interval.

    A network with no values is left out (tornettools does the same), so k may be smaller
    than len(per_network); each Interval says its own k."""
    nets = [_quantiles_of(v, quantiles) for v in per_network if len(v)]
    ivs = tuple(mean_interval([net[i] for net in nets], confidence, resolution=resolution, floor=floor)
                for i in range(len(quantiles)))
    return QuantileBand(tuple(quantiles), ivs)


def paired_difference(a: Mapping[str, Sequence[float]], b: Mapping[str, Sequence[float]], q: float,
                      confidence: float = CONFIDENCE) -> Interval:
    """Interval of quantile_q(a) - quantile_q(b) over the networks both arms ran on.

    Pairing by network removes the network-to-network spread both arms share (the sampled
    relays, the machine's load at the time), so the interval is that of the mean of k
    per-network differences. Networks where either arm has no values are left out."""
    common = sorted(n for n in a if n in b and len(a[n]) and len(b[n]))
    diffs = [order_quantile(a[n], q) - order_quantile(b[n], q) for n in common]
    return mean_interval(diffs, confidence)


def scalar_difference(a: Mapping[str, float], b: Mapping[str, float],
                      confidence: float = CONFIDENCE) -> Interval:
    """Interval of a - b for one number per network (goodput, a slope), paired by network."""
    common = sorted(n for n in a if n in b and not math.isnan(a[n]) and not math.isnan(b[n]))
    return mean_interval([a[n] - b[n] for n in common], confidence)


def welch_difference(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Interval of mean(a) - mean(b) for two independent sets of networks (Welch-Satterthwaite
    degrees of freedom), for comparisons across conditions that did not share networks."""
    a = [v for v in a if not math.isnan(v)]
    b = [v for v in b if not math.isnan(v)]
    if len(a) < 2 or len(b) < 2:
        m = (statistics.fmean(a) if a else math.nan) - (statistics.fmean(b) if b else math.nan)
        return Interval(m, math.nan, math.nan, min(len(a), len(b)), confidence)
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    m = statistics.fmean(a) - statistics.fmean(b)
    if va + vb == 0:
        return Interval(m, m, m, min(len(a), len(b)), confidence)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = t_quantile(0.5 + confidence / 2.0, df) * math.sqrt(va + vb)
    return Interval(m, m - half, m + half, min(len(a), len(b)), confidence)
