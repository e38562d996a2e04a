"""Lines the patched tor emitted (exit relay, loopback test network) against the model.

Recorded with the series in patches/ so that a change to docs/trace-format.md or
kist_reference.trace that the patch does not follow fails here, without building Tor.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kist_reference import replay, trace

DATA = Path(__file__).parent / "data" / "exit-relay-runs.wire"


def _by_event() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in DATA.read_text().splitlines():
        out.setdefault(line.split()[1], []).append(line)
    return out


def _fields(line: str) -> dict[str, str]:
    return dict(tok.split("=", 1) for tok in line.split()[2:])


@pytest.fixture(scope="module")
def runs() -> list[trace.RunRecord]:
    return [trace.parse_wire(line) for line in _by_event()["KIST_RUN"]]


def test_recorded_runs_parse_and_replay_without_divergence(runs: list[trace.RunRecord]) -> None:
    assert len(runs) >= 5
    ops = {trace.STEP_OPS[type(s)] for r in runs for s in r.steps}
    assert {"p", "c", "f", "k", "s", "W", "n", "x"} <= ops
    results = replay.replay(runs)
    assert [r.divergence for r in results if r.divergence] == []
    assert sum(r.decisions for r in results) > 100


def test_overhead_and_qtime_describe_the_same_runs(runs: list[trace.RunRecord]) -> None:
    events = _by_event()
    overhead = {int(_fields(x)["RUN"]): _fields(x) for x in events["KIST_OVERHEAD"]}
    qtime = {int(_fields(x)["RUN"]): _fields(x) for x in events["KIST_QTIME"]}
    for r in runs:
        o, q = overhead[r.run], qtime[r.run]
        flushed = [s for s in r.steps if isinstance(s, trace.CellFlush)]
        assert int(o["PENDING"]) == r.n_pending
        assert int(o["RUNNS"]) == r.t1_ns - r.t0_ns and int(o["SOCKNS"]) == r.ti_ns - r.t0_ns
        assert int(o["CELLS"]) == len(flushed) + sum(isinstance(s, trace.DestroyFlush) for s in r.steps)
        cells = [c.split(":") for c in q["CELLS"].split(",") if c]
        assert int(q["N"]) == len(cells) == len(flushed)
        assert [(int(c[0]), int(c[1])) for c in cells] == [(s.chan, s.circ) for s in flushed]
