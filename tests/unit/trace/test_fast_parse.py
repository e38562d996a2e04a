"""parse_wire's fast path gives exactly what the field-by-field checked path gives: the same
record (repr-equal, so a bool never turns into an int) for every valid line, and the same
TraceError, naming the same field, for every broken one."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kist_reference import trace as t
from kist_reference.recorder import SimRelay

DATA = Path(__file__).resolve().parents[2] / "data"


def _corpus() -> list[str]:
    lines = [t.to_wire(r) for name in ("real-tor-0.4.9.11-runs.jsonl", "example-runs.jsonl", "divergent-run.jsonl")
             for r in t.read_records(DATA / name)]
    for sched in ("KIST", "KISTLite", "Vanilla"):
        lines += [t.to_wire(r) for r in SimRelay(seed=5, n_channels=8, sched=sched).records(40)]
    return lines


CORPUS = _corpus()


def _outcome(parse: object, line: str) -> tuple[str, str]:
    try:
        return ("ok", repr(parse(line)))  # type: ignore[operator]
    except t.TraceError as exc:
        return ("error", str(exc))


def _checked(line: str) -> t.RunRecord:
    return t._parse_checked(t._keywords(line))


def test_every_recorded_and_simulated_run_parses_as_the_checked_path_does() -> None:
    assert len(CORPUS) > 250
    for line in CORPUS:
        rec = t.parse_wire(line)
        assert repr(rec) == repr(_checked(line))
        assert t.to_wire(rec) == line  # and the wire form is reproduced byte for byte


_TOKENS = [":", ",", "=", "-", "/", " ", "0", "1", "7", "x", "p", "f", "k", "n", "W", "L", "T", "E", "+", "_",
           "KIST", "Vanilla", "closed", "ww", "0x1p+0", "0x1p+99999", "P", "Q"]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(CORPUS) - 1),
       st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 2), st.sampled_from(_TOKENS)),
                min_size=1, max_size=3))
def test_a_mutated_line_gives_the_same_record_or_the_same_error(which: int,
                                                                edits: list[tuple[float, int, str]]) -> None:
    line = CORPUS[which]
    for where, how, token in edits:
        pos = int(where * len(line))
        line = (line[:pos] + token + line[pos + 1:], line[:pos] + line[pos + 3:], line[:pos] + token + line[pos:])[how]
    try:
        kw = t._keywords(line)
    except t.TraceError:
        return  # rejected before either path runs
    expected = _outcome(lambda _line: t._parse_checked(kw), line)
    assert _outcome(t.parse_wire, line) == expected


def test_an_overflowing_hex_float_is_a_trace_error_not_a_crash() -> None:
    line = CORPUS[0].replace("FACTOR=0x1p+0", "FACTOR=0x1p+99999")
    with pytest.raises(t.TraceError, match="FACTOR"):
        t.parse_wire(line)


def test_the_caches_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(t, "_CACHE_MAX", 8)
    monkeypatch.setattr(t, "_STEP_CACHES", {sched: {} for sched in t.SCHEDULERS})
    monkeypatch.setattr(t, "_SOCK_CACHE", {})
    for line in CORPUS[::10]:
        assert repr(t.parse_wire(line)) == repr(_checked(line))
        assert all(len(cache) <= 8 for cache in (*t._STEP_CACHES.values(), t._SOCK_CACHE))


def test_an_outcome_cached_for_one_scheduler_is_still_checked_for_another() -> None:
    line = next(x for x in CORPUS if "SCHED=Vanilla" in x and "k:" in x)
    outcome = line.split("STEPS=", 1)[1].split("k:", 1)[1].split(",", 1)[0].split(" ", 1)[0]  # chan:outcome
    t.parse_wire(line)  # caches k:<chan>:<vanilla outcome> for Vanilla
    kist = CORPUS[0]
    assert "SCHED=KIST " in kist
    broken = kist.replace("STEPS=", f"STEPS=k:{outcome},", 1)
    with pytest.raises(t.TraceError, match="outcome"):
        t.parse_wire(broken)
