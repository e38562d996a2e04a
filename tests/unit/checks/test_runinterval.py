"""The recorded run interval against the relay's torrc and consensus (harness.checks.runinterval).

The model takes each run's interval from the run itself, so only this check can notice a
Tor that computes the interval wrongly (the kist-interval-clamp mutant)."""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.checks import differential
from harness.checks.runinterval import allowed_intervals, parse_ms
from harness.store.db import Store
from harness.store.records import KIST_RUN, Context, Kind, Record
from kist_reference import trace

DATA = Path(__file__).parents[2] / "data" / "real-tor-0.4.9.11-runs.jsonl"
FP = "A" * 40


def _store(tmp: Path, conf_ms: str, consensus: dict[str, str], arm_settings: dict[str, str] | None = None) -> Path:
    runs = [r for r in trace.read_records(DATA) if r.sched != "Vanilla"][:20]
    path = tmp / "store.sqlite"
    ctx = Context("r", fingerprint=FP, arm="KIST")
    items = [(ctx, Record(Kind.SNAPSHOT, 1.0, {"conf": {"Schedulers": "KIST", "KISTSchedRunInterval": conf_ms},
                                               "consensus_params": consensus}))]
    if arm_settings is not None:
        items.append((ctx, Record(Kind.ARM, 2.0, {"arm": "KIST", "settings": arm_settings})))
    items += [(ctx, Record(KIST_RUN, 3.0 + i, {}, trace.to_wire(r))) for i, r in enumerate(runs)]
    with Store(path) as s:
        s.write_batch(items)
    return path


def _recorded_interval() -> int:
    ivals = {r.params.interval_ms for r in trace.read_records(DATA) if r.sched != "Vanilla"}
    assert len(ivals) == 1, ivals
    return ivals.pop()


def test_the_interval_tor_should_use_passes(tmp_path: Path) -> None:
    ival = _recorded_interval()
    path = _store(tmp_path, str(ival), {})
    summary = differential.check(differential.runs_from_store(path), tmp_path, ideal=False)
    assert summary.runs == 20 and not summary.divergences
    assert summary.invariant_violations == ()


def test_a_wrong_interval_is_an_invariant_violation_naming_tor_s_rule(tmp_path: Path) -> None:
    ival = _recorded_interval()
    other = 7 if ival != 7 else 8
    path = _store(tmp_path, "0 msec", {"KISTSchedRunInterval": str(other)})  # torrc 0: the consensus decides
    summary = differential.check(differential.runs_from_store(path), tmp_path, ideal=False)
    assert not summary.divergences  # the model alone cannot see it
    lines = summary.invariant_violations
    assert len(lines) == differential.MAX_INTERVAL_LINES + 1
    assert f"a {ival} ms interval" in lines[0] and f"[{other}] ms" in lines[0]
    assert "scheduler_kist.c:807-833" in lines[0]
    assert lines[-1].startswith("... and 10 more runs")


def test_an_arm_switch_adds_its_interval_to_what_is_allowed(tmp_path: Path) -> None:
    ival = _recorded_interval()
    path = _store(tmp_path, "50", {}, arm_settings={"Schedulers": "KIST", "KISTSchedRunInterval": str(ival)})
    with Store(path, readonly=True) as s:
        assert allowed_intervals(s) == {FP: frozenset({50, ival})}
    summary = differential.check(differential.runs_from_store(path), tmp_path, ideal=False)
    assert summary.invariant_violations == ()


def test_consensus_values_are_clamped_as_networkstatus_get_param_does(tmp_path: Path) -> None:
    path = _store(tmp_path, "0", {"KISTSchedRunInterval": "500"})
    with Store(path, readonly=True) as s:
        assert allowed_intervals(s) == {FP: frozenset({100})}


@pytest.mark.parametrize(("text", "ms"), [("10", 10), ("0 msec", 0), ("2 ms", 2), ("1 second", 1000),
                                          ("ten", None), ("5 fortnights", None)])
def test_torrc_interval_values(text: str, ms: int | None) -> None:
    assert parse_ms(text) == ms
