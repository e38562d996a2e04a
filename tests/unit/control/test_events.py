"""Event lines → typed records: recorded wire lines and hypothesis-generated garbage."""

from __future__ import annotations

from pathlib import Path

import stem.response.events as stem_events
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.control import events as ev
from harness.store.records import Kind

DATA = Path(__file__).parents[2] / "data" / "control" / "events.txt"
KIST_LINE = next(line.split("\t", 1)[1] for line in DATA.read_text().splitlines()
                 if line.startswith("KIST_RUN\t"))


def _cases() -> list[tuple[str, str]]:
    return [tuple(line.split("\t", 1)) for line in DATA.read_text().splitlines()  # type: ignore[misc]
            if line and not line.startswith("#")]


def test_recorded_lines_parse_into_the_expected_kinds() -> None:
    cases = _cases()
    assert len(cases) >= 15
    for kind, line in cases:
        rec = ev.parse_line(line, arrived=5.0)
        assert rec.kind == kind, (line, rec)
        assert rec.ts == 5.0
        if kind == Kind.ERROR:
            assert rec.raw and rec.data["reason"]


def test_typed_fields() -> None:
    assert ev.parse_line("650 BW 15 25").data == {"read": 15, "written": 25}
    conn = ev.parse_line("650 CONN_BW ID=11 TYPE=OR READ=272 WRITTEN=817").data
    assert conn["read"] == 272 and conn["written"] == 817 and conn["conn_type"] == "OR"
    cells = ev.parse_line("650 CELL_STATS ID=14 OutboundQueue=19403 OutboundConn=15 "
                          "OutboundAdded=create_fast:1,relay:5 OutboundRemoved=create_fast:1,relay:4 "
                          "OutboundTime=create_fast:0,relay:30").data
    assert (cells["outbound_ms"], cells["outbound_cells"], cells["inbound_cells"]) == (30, 5, 0)
    rec = ev.parse_line(KIST_LINE)
    run = rec.data
    assert run["run"] == 7 and run["sched"] == "KIST" and run["n_pending"] == 2
    assert run["t1_ns"] - run["t0_ns"] == 9000 and rec.raw is not None and rec.raw.startswith("V=1 RUN=7")
    assert ev.parse_line("650 BW 1 2").raw is None


def test_custom_events_are_registered_with_stem() -> None:
    assert stem_events.EVENT_TYPE_TO_CLASS["KIST_RUN"] is ev.KistRunEvent


def test_secrets_never_stored() -> None:
    rec = ev.parse_line("650 CIRC 4 EXTENDED $BAD~x PURPOSE=GENERAL SOCKS_PASSWORD=hunter2 "
                        "SOCKS_USERNAME=\"me\"")
    assert rec.kind == Kind.ERROR and rec.raw is not None and "SOCKS_PASSWORD=<redacted>" in rec.raw
    assert "hunter2" not in str(rec.data) + rec.raw and '"me"' not in str(rec.data) + rec.raw
    ok = ev.parse_line("650 CIRC 4 BUILT PURPOSE=GENERAL SOCKS_PASSWORD=hunter2")
    assert ok.kind == "CIRC" and "hunter2" not in str(ok.data)
    conf = ev.parse_line("650-CONF_CHANGED\r\n650-HashedControlPassword=16:ABC\r\n650 OK")
    assert conf.kind == "CONF_CHANGED" and "16:ABC" not in str(conf.data)


def test_key_value_event_class() -> None:
    cls = ev.define_kv_event("TEST_KV", {"A": ("a", "int"), "B": ("b", "float"), "L": ("l", "intlist")},
                             required=("A",))
    try:
        rec = ev.parse_line("650 TEST_KV A=3 B=0x1.8p+1 L=1,2 X=y")
        assert rec.data == {"a": 3, "b": 3.0, "l": [1, 2], "x": "y"}
        for bad in ("650 TEST_KV B=1", "650 TEST_KV A=x", "650 TEST_KV A=1 A=2", "650 TEST_KV A=1 junk"):
            assert ev.parse_line(bad).kind == Kind.ERROR, bad
    finally:
        del stem_events.EVENT_TYPE_TO_CLASS["TEST_KV"]
        del ev.CUSTOM_EVENTS["TEST_KV"]
    assert set(cls.REQUIRED) == {"A"}


_token = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=0, max_size=12)
_names = st.sampled_from(["BW", "ORCONN", "CIRC", "CIRC_BW", "CONN_BW", "CELL_STATS", "KIST_RUN",
                          "CONF_CHANGED", "STREAM", "ZZZ"])


@settings(max_examples=400, deadline=None)
@given(_names, st.lists(_token, max_size=8))
def test_random_lines_never_raise(name: str, tokens: list[str]) -> None:
    line = " ".join(["650", name, *tokens])
    rec = ev.parse_line(line, arrived=1.0)
    assert rec.kind in (name, Kind.ERROR)
    if rec.kind == Kind.ERROR:
        assert rec.raw is not None and rec.raw.split()[0] in (name, "650")


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=len("650 KIST_RUN "), max_value=len(KIST_LINE) - 1),
       st.integers(min_value=0, max_value=20), st.text(alphabet="0123456789:,=-x ", max_size=4))
def test_mutated_kist_run_lines_become_typed_or_error(start: int, cut: int, insert: str) -> None:
    line = KIST_LINE[:start] + insert + KIST_LINE[start + cut:]
    rec = ev.parse_line(line, arrived=1.0)
    assert rec.kind in ("KIST_RUN", Kind.ERROR)
    if rec.kind == "KIST_RUN":
        assert isinstance(rec.data["n_pending"], int) and rec.raw and rec.raw in line
    else:
        assert rec.raw is not None and rec.raw.strip() == line[4:].strip()


def test_the_documented_example_parses_through_stem() -> None:
    """docs/trace-format.md is the contract: its example line must become a typed record."""
    doc = (Path(__file__).parents[3] / "docs" / "trace-format.md").read_text()
    block = doc[doc.index("```\n650 KIST_RUN") + 4:]
    line = " ".join(part.strip() for part in block[:block.index("```")].strip().splitlines())
    rec = ev.parse_line(line)
    assert rec.kind == "KIST_RUN", rec.data
