"""The run-record contract: the documented example parses, both encodings round-trip
exactly, and bad input is rejected with the field named."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kist_reference import trace as t

DOC = Path(__file__).resolve().parents[3] / "docs" / "trace-format.md"


def doc_example() -> str:
    text = DOC.read_text()
    block = text.split("```\n650 KIST_RUN", 1)[1].split("```", 1)[0]
    return "650 KIST_RUN " + " ".join(block.split())


def test_documented_example_parses_into_the_documented_record() -> None:
    rec = t.parse_wire(doc_example())
    assert rec.sched == "KIST" and rec.run == 7
    assert rec.pending == (5, 9)
    assert rec.snapshots[1].mux.heap[0] == t.HeapEntry(2147483651, 3.0, 40, 2)
    assert rec.sock[0] == t.TcpInfo(cwnd=4, unacked=2, mss=1448, notsent=0)
    assert rec.steps[2] == t.CellFlush(5, 2147483650, 40, 1200)
    assert rec.steps[5] == t.ShouldWrite(5, 514, False)
    assert rec.end_writes == (t.EndWrite(9, 1028, 0), t.EndWrite(5, 514, 0))
    assert {s.state for s in rec.snapshots} == {"P"}
    assert rec.readd == () and rec.final == () and rec.next_us == -1


def test_wire_form_is_reproduced_byte_for_byte() -> None:
    line = doc_example()
    assert "650 " + t.to_wire(t.parse_wire(line)) == line


def test_every_step_op_is_documented() -> None:
    text = DOC.read_text()
    documented = set(re.findall(r"^\| `(\w)` \| ", text, flags=re.M))
    assert set(t.STEP_TYPES) <= documented


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda s: s.replace("STEPS=p:5", "STEPS=q:5"), "STEPS"),
        (lambda s: s.replace("HEAP=2147483650:0x1p+0", "HEAP=2147483650:1.0x"), "HEAP"),
        (lambda s: s.replace(" NPEND=2", ""), "NPEND"),
        (lambda s: s.replace("V=1 ", "V=9 "), "V"),
        (lambda s: s.replace("k:9:2", "k:9:7"), "STEPS"),
        (lambda s: s.replace("MUX=1:0:0:40:1", "MUX=1:0:0:40:3"), "HEAP"),
        (lambda s: s.replace(":0:P,", ":0:Q,"), "CHANS"),
        (lambda s: s.replace(":0:P,", ":0,"), "CHANS"),
        (lambda s: s.replace(" READD=", " EW=9:1028:0 READD="), "EW"),
    ],
)
def test_bad_wire_lines_name_the_field(mutate, field) -> None:
    with pytest.raises(t.TraceError) as err:
        t.parse_wire(mutate(doc_example()))
    assert err.value.field == field


def test_read_records_names_file_and_line(tmp_path: Path) -> None:
    good = t.to_json(t.parse_wire(doc_example()))
    path = tmp_path / "runs.jsonl"
    path.write_text(good + "\n# comment\n" + good.replace('"sched":"KIST"', '"sched":"FIFO"') + "\n")
    with pytest.raises(t.TraceError) as err:
        list(t.read_records(path))
    assert err.value.line == 3 and err.value.field == "SCHED"
    assert str(path) in str(err.value)


def test_unreadable_file_is_a_trace_error(tmp_path: Path) -> None:
    with pytest.raises(t.TraceError):
        list(t.read_records(tmp_path / "missing.jsonl"))
    binary = tmp_path / "bin.jsonl"
    binary.write_bytes(b"\xff\xfe\x00junk")
    with pytest.raises(t.TraceError):
        list(t.read_records(binary))


doubles = st.floats(allow_nan=False, allow_infinity=False)
ids = st.integers(min_value=0, max_value=2**64 - 1)
u32 = st.integers(min_value=0, max_value=2**32 - 1)


@st.composite
def records(draw: st.DrawFn) -> t.RunRecord:
    sched = draw(st.sampled_from(t.SCHEDULERS))
    n = draw(st.integers(min_value=0, max_value=4))
    extra = draw(st.integers(min_value=0, max_value=2))
    snaps = tuple(
        t.ChannelSnapshot(
            draw(ids), draw(st.booleans()), draw(st.booleans()), draw(u32),
            draw(st.none() | u32), draw(st.none() | u32), draw(st.sampled_from(t.SCHED_STATES)),
            t.MuxSnapshot(draw(u32), draw(u32), draw(st.booleans()), draw(u32),
                          tuple(draw(st.lists(st.builds(t.HeapEntry, u32, doubles, u32, u32), max_size=3)))))
        for _ in range(n + extra))
    socks: tuple[t.SockRead, ...] = () if sched == "Vanilla" else tuple(
        draw(st.one_of(st.builds(t.TcpInfo, u32, u32, u32, u32), st.builds(t.SockError, u32), st.just(t.Fallback())))
        for _ in range(n))
    outcomes = t.VANILLA_OUTCOMES if sched == "Vanilla" else t.KIST_OUTCOMES
    step = st.one_of(
        st.builds(t.Pop, ids), st.builds(t.ShouldWrite, ids, u32, st.booleans()),
        st.builds(t.KernelWrite, ids, u32, u32), st.builds(t.CanWrite, ids, st.booleans()),
        st.builds(t.Writeable, ids, u32), st.builds(t.CellFlush, ids, u32, u32, u32),
        st.builds(t.DestroyFlush, ids), st.builds(t.StaleQueue, ids, u32), st.builds(t.WriteFailed, ids, u32),
        st.builds(t.LeftOpen, ids), st.builds(t.External, ids, st.sampled_from(t.EXTERNAL_CALLS)),
        st.builds(t.Outcome, ids, st.sampled_from(outcomes)), st.builds(t.DestroyFailed, ids),
        st.builds(t.EndWrite, ids, u32, u32),
        *([st.builds(t.Snapshot, st.integers(0, n + extra - 1))] if n + extra else []),
    )
    return t.RunRecord(
        1, draw(ids), sched, draw(u32), draw(u32), draw(u32),
        t.Params(draw(st.integers(1, 100)), draw(doubles), draw(st.booleans()), draw(u32),
                 # what validate() accepts: Tor's tick range, a scale factor in (0, 1]
                 draw(st.floats(min_value=0.0, max_value=1.0, exclude_min=True)),
                 draw(st.integers(1, 600))),
        n, snaps, socks, tuple(draw(st.lists(step, max_size=20))),
        tuple(draw(st.lists(ids, max_size=3))), tuple(draw(st.lists(ids, max_size=3))),
        draw(st.integers(0, 100)), draw(st.integers(-1, 100000)),
    )


@given(records())
def test_wire_and_json_round_trip_exactly(rec: t.RunRecord) -> None:
    assert t.parse_wire(t.to_wire(rec)) == rec
    assert t.from_json(t.to_json(rec)) == rec
    assert t.parse_line(t.to_json(rec)) == t.parse_line("650 " + t.to_wire(rec))
