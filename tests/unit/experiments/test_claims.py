"""The claims table on synthetic per-network results with known verdicts."""

from __future__ import annotations

import random

from harness.experiments import claims
from harness.experiments.claims import KIST, VANILLA, NetworkResult, Outcome


def _ttlb(k: int, effects: dict[str, float], *, spread: float = 0.3, noise: float = 0.01,
          seed: int = 0) -> list[NetworkResult]:
    """k networks per condition sharing ids; KIST's 320 KiB TTLB = Vanilla's + effects[cond]."""
    rng = random.Random(seed)
    out = []
    for cond, eff in effects.items():
        for i in range(k):
            base = 1.0 + spread * rng.random()
            van = [base + 0.01 * j for j in range(21)]
            kis = [v + eff + rng.gauss(0, noise) for v in van]
            out.append(NetworkResult(f"n{i}", cond, VANILLA, {"ttlb_320KiB": van}))
            out.append(NetworkResult(f"n{i}", cond, KIST, {"ttlb_320KiB": kis}))
    return out


def _claim(cid: str) -> claims.Claim:
    return next(c for c in claims.PAPER_CLAIMS if c.claim == cid)


def test_load_claim_reproduced_when_gain_grows_with_load() -> None:
    res = _ttlb(6, {"low-load": 0.0, "base": -0.05, "high-load": -0.3})
    v = _claim("load").judge(res)
    assert v.outcome is Outcome.REPRODUCED, v.numbers
    assert "high-load" in v.conditions and "k=6" in v.numbers


def test_load_claim_refuted_when_kist_is_worse_at_base() -> None:
    # the current report's finding: KIST slower for 320 KiB
    res = _ttlb(6, {"low-load": 0.0, "base": 0.4, "high-load": -0.3})
    assert _claim("load").judge(res).outcome is Outcome.REFUTED


def test_inconclusive_when_the_interval_straddles_zero() -> None:
    res = _ttlb(5, {"no-loss": 0.0, "base": 0.0, "high-loss": 0.0}, noise=0.2, seed=3)
    v = _claim("loss").judge(res)
    assert v.outcome is Outcome.INCONCLUSIVE, v.numbers


def test_one_network_is_never_enough() -> None:
    res = _ttlb(1, {"no-loss": 0.0, "high-loss": -1.0})
    assert _claim("loss").judge(res).outcome is Outcome.INCONCLUSIVE


def test_missing_metric_is_no_data() -> None:
    res = _ttlb(5, {"base": 0.0})
    assert _claim("kernel-queue").judge(res).outcome is Outcome.NO_DATA


def test_trend_without_shared_networks_uses_welch() -> None:
    res = _ttlb(5, {"no-loss": 0.0, "high-loss": -0.5})
    res = [NetworkResult(r.network + "x", r.condition, r.arm, r.samples) if r.condition == "high-loss" else r
           for r in res]
    v = claims.Trend("t", "t", "ttlb_320KiB", 0.5, "no-loss", "high-loss").judge(res)
    assert v.outcome is Outcome.REPRODUCED and "Welch" in v.numbers


def _scalars(k: int, arm: str, cond: str, metric: str, values: list[float]) -> list[NetworkResult]:
    return [NetworkResult(f"n{i}", cond, arm, {}, {metric: values[i % len(values)]}) for i in range(k)]


def test_tor_queue_fraction_bounds() -> None:
    claim = claims.ArmLevel("tq", "tq", "tor_queue_within_interval", KIST, ("base",), low=0.8)
    assert claim.judge(_scalars(5, KIST, "base", "tor_queue_within_interval", [0.9, 0.92, 0.88])).outcome \
        is Outcome.REPRODUCED
    assert claim.judge(_scalars(5, KIST, "base", "tor_queue_within_interval", [0.5, 0.55, 0.6])).outcome \
        is Outcome.REFUTED
    assert claim.judge(_scalars(5, KIST, "base", "tor_queue_within_interval", [0.7, 0.95, 0.8])).outcome \
        is Outcome.INCONCLUSIVE


def test_goodput_non_inferiority_margin() -> None:
    claim = claims.ArmDifference("g", "g", "goodput_kib_s", None, ("base",), better="higher", strict=False,
                                 margin=0.05)
    van = _scalars(5, VANILLA, "base", "goodput_kib_s", [1000.0, 1100.0, 900.0, 1050.0, 950.0])
    # KIST 2 % lower on every network: within the 5 % margin -> not lower (reproduced)
    kis = [NetworkResult(r.network, r.condition, KIST, {}, {"goodput_kib_s": r.scalars["goodput_kib_s"] * 0.98})
           for r in van]
    assert claim.judge(van + kis).outcome is Outcome.REPRODUCED
    # 20 % lower everywhere: refuted
    kis = [NetworkResult(r.network, r.condition, KIST, {}, {"goodput_kib_s": r.scalars["goodput_kib_s"] * 0.8})
           for r in van]
    assert claim.judge(van + kis).outcome is Outcome.REFUTED


def test_overhead_claim_needs_slope_and_fit() -> None:
    good = (_scalars(5, KIST, "base", "overhead_us_per_socket", [0.9, 1.1, 1.0])
            + _scalars(5, KIST, "base", "overhead_fit_r2", [0.95, 0.97]))
    assert _claim("overhead").judge(good).outcome is Outcome.REPRODUCED
    slow = (_scalars(5, KIST, "base", "overhead_us_per_socket", [20.0, 22.0])
            + _scalars(5, KIST, "base", "overhead_fit_r2", [0.95, 0.97]))
    assert _claim("overhead").judge(slow).outcome is Outcome.REFUTED


def test_tables_render_every_verdict() -> None:
    res = _ttlb(5, {"low-load": 0.0, "base": 0.0, "high-load": -0.3})
    verdicts = claims.judge_all(res)
    assert len(verdicts) == len(claims.PAPER_CLAIMS)
    md = claims.markdown_table(verdicts)
    assert md.count("\n") == len(verdicts) + 2 and "**no data**" in md
    page = claims.html_table(verdicts)
    assert page.count("<tr class=") == len(verdicts) and "&lt;" in page  # rules like "< 0" are escaped


def test_conditions_not_run_are_left_out_or_said() -> None:
    res = _ttlb(5, {"base": -0.2})
    v = _claim("goodput").judge(res)
    assert v.conditions == ("base",) and v.outcome is Outcome.NO_DATA
    loss = _claim("loss").judge(res)
    assert loss.outcome is Outcome.NO_DATA and "not run" in loss.numbers
    kq = claims.ArmDifference("k", "k", "ttlb_320KiB", 0.5, claims.ALL_CONDITIONS).judge(res)
    assert kq.outcome is Outcome.REPRODUCED and kq.numbers.startswith("base:") and "low-load" not in kq.numbers
