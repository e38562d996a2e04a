"""Socket reads with values a variant's patch appends (``T/cwnd/unacked/mss/notsent/x...``).

Both parsers read them into ``TcpInfo.extra``, both forms write them back, and the faithful
model ignores them: a record of Tor's own KIST replays the same with or without them.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from kist_reference import trace
from kist_reference.replay import replay_run
from kist_reference.trace import TcpInfo

DATA = Path(__file__).resolve().parents[2] / "data"


def _with_extra(rec: trace.RunRecord) -> trace.RunRecord:
    socks = tuple(TcpInfo(s.cwnd, s.unacked, s.mss, s.notsent, (87040, i)) if isinstance(s, TcpInfo) else s
                  for i, s in enumerate(rec.sock))
    return replace(rec, sock=socks)


def _kist_records() -> list[trace.RunRecord]:
    recs = [r for r in trace.read_records(DATA / "real-tor-0.4.9.11-runs.jsonl")
            if r.sched == "KIST" and any(isinstance(s, TcpInfo) for s in r.sock)]
    assert recs
    return recs[:20]


def test_wire_and_json_round_trip_the_extra_values(tmp_path: Path) -> None:
    for rec in _kist_records():
        ext = _with_extra(rec)
        wire = trace.to_wire(ext)
        assert "/87040/0" in wire
        assert trace.parse_wire(wire) == ext == trace._parse_checked(trace._keywords(wire))  # fast and checked
        path = tmp_path / "r.jsonl"
        trace.write_records(path, [ext])
        assert list(trace.read_records(path)) == [ext]


def test_the_faithful_model_ignores_them() -> None:
    for rec in _kist_records():
        plain, ext = replay_run(rec), replay_run(_with_extra(rec))
        assert plain.divergence is None and ext.divergence is None and plain.decisions == ext.decisions


@pytest.mark.parametrize("bad", ["T/1/2/3", "T/1/2/3/4/x", "T/1/2/3/4/"])
def test_a_short_or_malformed_read_is_refused(bad: str) -> None:
    rec = _kist_records()[0]
    wire = trace.to_wire(rec)
    head, rest = wire.split(" SOCK=", 1)
    first, _, tail = rest.partition(",") if "," in rest.split(" ", 1)[0] else (rest.split(" ", 1)[0], "", "")
    mangled = f"{head} SOCK={bad}" + ("," + tail if tail else " " + rest.split(" ", 1)[1])
    with pytest.raises(trace.TraceError, match="SOCK"):
        trace.parse_wire(mangled)
