"""The limit-bound share: which KIST runs had a socket at its limit, per relay and arm."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from harness.report import limitbound

RawStore = Callable[[Path, str, list[tuple[str, str, str, str]]], Path]  # conftest's make_raw_store

RUN = ("V=1 RUN={n} SCHED={sched} NPEND=1 CHANS=9:1:1:0:91904:0:P SOCK={sock} "
       "STEPS=p:9,{c},f:9:1:1:1,x:9:ww READD= FINAL=")


def _store(make: RawStore, tmp: Path, rows: list[tuple[str, str, str]]) -> Path:
    return make(tmp, "KIST_RUN", [(fp, arm, "{}", raw) for fp, arm, raw in rows])


def test_share_counts_runs_with_a_blocked_socket(tmp_path: Path, make_raw_store: RawStore) -> None:
    rows = [("AAAAAAAAAA", "KIST", RUN.format(n=i, sched="KIST", sock="T/10/2/1448/0", c="c:9:0" if i < 3 else "c:9:1"))
            for i in range(10)]
    rows += [("AAAAAAAAAA", "Vanilla", RUN.format(n=99, sched="Vanilla", sock="", c="v:9:4"))]
    rows += [("BBBBBBBBBB", "KIST", RUN.format(n=5, sched="KIST", sock="T/40/0/65483/0", c="c:19:1,c:9:10"))]
    out = limitbound.limit_bound(_store(make_raw_store, tmp_path, rows))
    assert [(r.relay, r.arm, r.runs, r.bound) for r in out] == [("AAAAAAAA", "KIST", 10, 3), ("BBBBBBBB", "KIST", 1, 0)]
    assert out[0].share == 0.3 and out[0].cwnd_median == 10 and out[0].mss_median == 1448
    note = limitbound.note(tmp_path / "store.sqlite")
    assert note is not None and "AAAAAAAA KIST 30.0% of 10" in note
    assert "| AAAAAAAA | KIST | 10 | 3 | 30.0% | 10 | 1448 |" in limitbound.render(out)


def test_no_kist_runs_no_note(tmp_path: Path, make_raw_store: RawStore) -> None:
    assert limitbound.note(_store(make_raw_store, tmp_path, [])) is None
