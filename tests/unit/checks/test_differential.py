"""The differential check over recorded runs: counts, reproducers, invariants."""

from __future__ import annotations

from pathlib import Path

from harness.checks.differential import Recorded, check
from kist_reference import trace

DATA = Path(__file__).resolve().parents[2] / "data"


def _recorded(name: str) -> list[Recorded]:
    return [Recorded("relayA", "KIST", trace.to_wire(r)) for r in trace.read_records(DATA / name)]


def test_shipped_examples_have_no_divergence(tmp_path: Path) -> None:
    summary = check(_recorded("example-runs.jsonl"), tmp_path)
    assert summary.runs == 24 and summary.decisions > 2000
    assert summary.divergences == () and summary.invariant_violations == ()
    assert summary.ideal_cells > 0
    assert not (tmp_path / "divergences").exists()


def test_a_divergent_run_gets_a_reproducer_that_replays_alone(tmp_path: Path) -> None:
    summary = check(_recorded("divergent-run.jsonl"), tmp_path)
    assert len(summary.divergences) == 1
    div = summary.divergences[0]
    repro = Path(div.reproducer)
    assert repro.parent == tmp_path / "divergences"
    [again] = trace.read_records(repro)
    from kist_reference.replay import replay_run

    assert replay_run(again).divergence is not None
    assert div.actual != div.expected


def test_an_unreadable_payload_is_a_violation_not_a_crash(tmp_path: Path) -> None:
    summary = check([Recorded("r", "KIST", "KIST_RUN V=1 RUN=x")], tmp_path)
    assert summary.runs == 0 and len(summary.invariant_violations) == 1
