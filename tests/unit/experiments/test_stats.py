"""Known answers for the across-network statistics (t quantiles from published tables)."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from harness.experiments import stats


@pytest.mark.parametrize(("p", "df", "expected"), [
    (0.975, 1, 12.706204736),   # standard t tables
    (0.975, 2, 4.302652730),
    (0.975, 4, 2.776445105),
    (0.975, 9, 2.262157163),
    (0.975, 29, 2.045229642),
    (0.95, 10, 1.812461123),
    (0.995, 5, 4.032142984),
    (0.975, 1000, 1.962339081),  # near the normal 1.959964
])
def test_t_quantile_matches_tables(p: float, df: float, expected: float) -> None:
    assert stats.t_quantile(p, df) == pytest.approx(expected, rel=1e-8)
    assert stats.t_quantile(1 - p, df) == pytest.approx(-expected, rel=1e-8)


def test_t_quantile_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        stats.t_quantile(1.0, 3)
    with pytest.raises(ValueError):
        stats.t_quantile(0.9, 0)


def test_mean_interval_known_answer() -> None:
    # values 1..5: mean 3, s = sqrt(2.5), t(0.975, 4) = 2.776445105
    iv = stats.mean_interval([1, 2, 3, 4, 5])
    half = 2.776445105 * math.sqrt(2.5) / math.sqrt(5)
    assert iv.mean == 3
    assert iv.low == pytest.approx(3 - half)
    assert iv.high == pytest.approx(3 + half)
    assert iv.k == 5
    assert not iv.excludes(3) and iv.excludes(5)


def test_mean_interval_equals_tornettools_form() -> None:
    # tornettools: e = t.ppf(.975, k-1) / sqrt(k-1) * sqrt(var_pop + sum(r^2)/12)
    vals = [0.8, 1.1, 0.95, 1.3, 0.7, 1.05]
    r = 0.01
    k = len(vals)
    var_pop = statistics.pvariance(vals)
    e = stats.t_quantile(0.975, k - 1) / math.sqrt(k - 1) * math.sqrt(var_pop + k * r * r / 12)
    iv = stats.mean_interval(vals, resolution=r)
    assert iv.high - iv.mean == pytest.approx(e)


def test_small_k_has_no_interval_and_floor_clips() -> None:
    assert math.isnan(stats.mean_interval([2.0]).low)
    assert stats.mean_interval([]).k == 0
    assert stats.mean_interval([0.0, 0.1, 0.0, 0.2], floor=0.0).low == 0.0


def test_order_quantile_is_tornettools_index() -> None:
    vals = [5, 1, 4, 2, 3]           # sorted 1..5, n-1 = 4
    assert stats.order_quantile(vals, 0.0) == 1
    assert stats.order_quantile(vals, 0.5) == 3
    assert stats.order_quantile(vals, 0.74) == 3   # int(2.96) = 2 -> no interpolation
    assert stats.order_quantile(vals, 1.0) == 5


def test_quantile_band_takes_one_value_per_network() -> None:
    nets = [[1, 2, 3], [2, 3, 4], [3, 4, 5], []]   # the empty network is left out
    band = stats.quantile_band(nets, (0.0, 0.5, 1.0))
    med = band.at(0.5)
    assert med.k == 3 and med.mean == 3
    half = stats.t_quantile(0.975, 2) * 1.0 / math.sqrt(3)
    assert med.high == pytest.approx(3 + half)
    assert band.at(0.0).low == 0.0   # floored at 0 like download times


def test_more_samples_inside_networks_do_not_narrow_the_band() -> None:
    # the OINE point: the width is set by the spread between networks, not by n per network
    rng = random.Random(1)
    centres = [1.0, 1.4, 0.8, 1.2, 1.1]
    few = [[c + rng.gauss(0, 0.01) for _ in range(50)] for c in centres]
    many = [[c + rng.gauss(0, 0.01) for _ in range(5000)] for c in centres]
    w_few = stats.quantile_band(few, (0.5,)).at(0.5).half_width
    w_many = stats.quantile_band(many, (0.5,)).at(0.5).half_width
    assert w_many == pytest.approx(w_few, rel=0.05)


def test_paired_difference_cancels_the_shared_network_effect() -> None:
    # each network shifts both arms by the same amount; KIST is 0.1 lower everywhere
    shift = {"n1": 0.0, "n2": 5.0, "n3": -3.0, "n4": 2.0}
    base = [1.0, 2.0, 3.0]
    vanilla = {n: [v + s for v in base] for n, s in shift.items()}
    kist = {n: [v + s - 0.1 + 0.01 * i for v in base] for i, (n, s) in enumerate(shift.items())}
    kist["n5"] = [1.0]  # only one arm: left out
    d = stats.paired_difference(kist, vanilla, 0.5)
    assert d.k == 4
    assert d.mean == pytest.approx(-0.085)
    assert d.high < 0   # significant although the networks differ by up to 8
    unpaired = stats.welch_difference([stats.order_quantile(kist[n], 0.5) for n in shift],
                                      [stats.order_quantile(vanilla[n], 0.5) for n in shift])
    assert unpaired.low < 0 < unpaired.high


def test_scalar_and_welch_difference_known_answers() -> None:
    d = stats.scalar_difference({"a": 3.0, "b": 5.0, "c": 4.0}, {"a": 1.0, "b": 2.0, "c": 2.0, "z": 9.0})
    assert d.k == 3 and d.mean == pytest.approx(7 / 3)
    # Welch: equal n and variance -> df = 2(n-1)
    w = stats.welch_difference([1, 2, 3], [4, 5, 6])
    assert w.mean == -3
    assert w.high == pytest.approx(-3 + stats.t_quantile(0.975, 4) * math.sqrt(2 / 3))


def test_interval_text() -> None:
    assert stats.Interval(0.5, 0.25, 0.75, 5).text() == "0.5 [0.25, 0.75]"
    assert "no interval" in stats.Interval(0.5, math.nan, math.nan, 1).text()
