"""collect's A/B summary: 95 % intervals with the schedule's blocks as the unit."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from harness.checks.arms import arm_interval, paired_blocks, periods, summarize
from harness.checks.stats import welch_t
from harness.cli import main
from harness.control.abtest import Schedule, parse_arms
from harness.experiments.stats import t_quantile
from harness.store.db import open_store
from harness.store.records import BW, Context, Kind, Record

PERIOD = 30.0


def _write_blocks(path: Path, n_blocks: int, *, drift: float, gain: float, noise: float,
                  record_block: bool = True, seed: int = 5, arms: str = "KIST,Vanilla") -> None:
    """A store as collect writes it: ARM records from a real Schedule, BW records each second;
    goodput = a slow drift shared by both arms + KIST's gain + noise."""
    rng = random.Random(seed)
    sched = Schedule(parse_arms(arms), PERIOD, seed)
    with open_store(path) as s:
        for n in range(n_blocks * len(sched.arms)):
            t = n * PERIOD
            slot = sched.slot_at(t + 1)
            ctx = Context("r", arm=slot.arm.name)
            arm_data: dict[str, object] = {"arm": slot.arm.name}
            if record_block:
                arm_data |= {"block": slot.block, "index": slot.index}
            items = [(ctx, Record(Kind.ARM, t, arm_data))]
            for sec in range(3, int(PERIOD)):
                level = 1000 + drift * (t + sec) + (gain if slot.arm.name == "KIST" else 0.0)
                items.append((ctx, Record(BW, t + sec, {"read": 0, "written": level + rng.gauss(0, noise)})))
            s.write_batch(items)
        s.write_batch([(Context("r"), Record(Kind.END, n_blocks * len(sched.arms) * PERIOD, {}))])


def test_t_interval_over_blocks_matches_the_formula() -> None:
    a = arm_interval("m", "KIST", [1.0, 2.0, 3.0])
    half = t_quantile(0.975, 2) * 1.0 / math.sqrt(3)
    assert (a.blocks, a.mean) == (3, 2.0)
    assert a.ci_low == pytest.approx(2.0 - half) and a.ci_high == pytest.approx(2.0 + half)
    assert a.ci_text().startswith("95% CI [")


def test_paired_difference_cancels_drift_an_unpaired_one_cannot(tmp_path: Path) -> None:
    """Goodput drifts by ~10x KIST's gain over the run (time of day); KIST is 100 B/s better.
    Inside a block the drift adds +-60 B/s, its sign set by the block's shuffled order."""
    _write_blocks(tmp_path / "s.db", 8, drift=2.0, gain=100.0, noise=30.0)
    with open_store(tmp_path / "s.db", readonly=True) as s:
        arm_stats, comps = summarize(s, "r")
        blocks = [p.block for p in periods(s, "r")]
    assert blocks == [b for b in range(8) for _ in range(2)]
    (c,) = [c for c in comps if c.metric == "goodput"]
    assert (c.arm_a, c.arm_b, c.blocks) == ("KIST", "Vanilla", 8)
    assert 0 < c.ci_low < 100 < c.ci_high and c.p_value < 0.01
    per_arm = {a.arm: a for a in arm_stats if a.metric == "goodput"}
    assert per_arm["KIST"].blocks == 8 and per_arm["KIST"].ci_low < per_arm["KIST"].mean < per_arm["KIST"].ci_high
    # the same periods compared unpaired: the drift swamps the gain
    k = [v for v in _goodput(tmp_path / "s.db", "KIST")]
    v = [v for v in _goodput(tmp_path / "s.db", "Vanilla")]
    assert welch_t(k, v).p_value > 0.3


def _goodput(path: Path, arm: str) -> list[float]:
    from harness.checks.arms import METRICS, period_means

    with open_store(path, readonly=True) as s:
        return period_means(s, "r", next(m for m in METRICS if m.name == "goodput"), 2.0)[arm]


def test_blocks_are_counted_when_the_store_does_not_record_them(tmp_path: Path) -> None:
    _write_blocks(tmp_path / "s.db", 4, drift=0.0, gain=50.0, noise=5.0, record_block=False)
    with open_store(tmp_path / "s.db", readonly=True) as s:
        assert [p.block for p in periods(s, "r")] == [0, 0, 1, 1, 2, 2, 3, 3]
        _, comps = summarize(s, "r")
    (c,) = [c for c in comps if c.metric == "goodput"]
    assert c.blocks == 4 and c.ci_low < 50 < c.ci_high


def test_three_arms_give_three_paired_comparisons(tmp_path: Path) -> None:
    _write_blocks(tmp_path / "s.db", 3, drift=1.0, gain=80.0, noise=5.0, arms="KIST,Vanilla,KISTLite")
    with open_store(tmp_path / "s.db", readonly=True) as s:
        _, comps = summarize(s, "r")
    pairs = {(c.arm_a, c.arm_b): c for c in comps if c.metric == "goodput"}
    assert set(pairs) == {("KIST", "KISTLite"), ("KIST", "Vanilla"), ("KISTLite", "Vanilla")}
    assert all(c.blocks == 3 for c in pairs.values())
    assert pairs[("KISTLite", "Vanilla")].ci_low < 0 < pairs[("KISTLite", "Vanilla")].ci_high


def test_too_few_blocks_says_so_instead_of_an_interval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write_blocks(tmp_path / "s.db", 1, drift=0.0, gain=100.0, noise=5.0)
    with open_store(tmp_path / "s.db", readonly=True) as s:
        arm_stats, comps = summarize(s, "r")
    (c,) = [c for c in comps if c.metric == "goodput"]
    assert c.blocks == 1 and math.isnan(c.ci_low) and math.isnan(c.p_value)
    assert c.ci_text() == "no interval (1 block)"
    assert all(a.ci_text() == "no interval (1 block)" for a in arm_stats if a.metric == "goodput")
    assert paired_blocks("m", "a", "b", {}).ci_text() == "no interval (0 blocks)"
    # the command a person runs on that store: no traceback, the reason in words
    assert main(["collect", "--out", str(tmp_path / "s.db")]) == 0
    out = capsys.readouterr().out
    assert "unit: a block = one period of each arm" in out
    assert "KIST-Vanilla: diff=" in out and "no interval (1 block) over 1 paired block" in out


def test_an_arm_without_samples_is_not_compared(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with open_store(tmp_path / "s.db") as s:
        for n, arm in enumerate(("KIST", "Vanilla", "KIST", "Vanilla")):
            ctx = Context("r", arm=arm)
            items = [(ctx, Record(Kind.ARM, n * PERIOD, {"arm": arm, "block": n // 2, "index": n % 2}))]
            if arm == "KIST":
                items += [(ctx, Record(BW, n * PERIOD + i, {"read": 0, "written": 900 + i})) for i in range(3, 20)]
            s.write_batch(items)
        s.write_batch([(Context("r"), Record(Kind.END, 4 * PERIOD, {}))])
    assert main(["collect", "--out", str(tmp_path / "s.db")]) == 0
    out = capsys.readouterr().out
    assert "goodput                  KIST       blocks=  2" in out
    assert "not compared: no block measured both arms" not in out  # Vanilla never measured: no pair


def test_one_switch_recorded_by_several_relays_is_one_period(tmp_path: Path) -> None:
    """The main job switches both relays under test: two ARM records per switch, ms apart."""
    with open_store(tmp_path / "s.db") as s:
        for n, arm in enumerate(("KIST", "Vanilla", "Vanilla", "KIST")):
            t = n * PERIOD
            for relay in ("r1", "r2"):
                ctx = Context("r", relay, arm=arm)
                s.write_batch([(ctx, Record(Kind.ARM, t + (0.002 if relay == "r2" else 0.0),
                                            {"arm": arm, "block": n // 2, "index": n % 2}))])
            s.write_batch([(Context("r", "r1", arm=arm),
                            Record(BW, t + i, {"read": 0, "written": 1000 + (50 if arm == "KIST" else 0)}))
                           for i in range(3, 25)])
        s.write_batch([(Context("r"), Record(Kind.END, 4 * PERIOD, {}))])
    with open_store(tmp_path / "s.db", readonly=True) as s:
        ps = periods(s, "r")
        _, comps = summarize(s, "r")
    assert [(p.arm, p.block) for p in ps] == [("KIST", 0), ("Vanilla", 0), ("Vanilla", 1), ("KIST", 1)]
    assert [p.start for p in ps] == [0.0, PERIOD, 2 * PERIOD, 3 * PERIOD]
    (c,) = [c for c in comps if c.metric == "goodput"]
    assert (c.blocks, c.diff) == (2, 50.0)
