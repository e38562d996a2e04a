"""Queue times vs the decision timeline: which cells a run's kernel writes drained."""

from __future__ import annotations

from pathlib import Path

from harness.checks.queuetimes import CellTime, check_pairs, expected_drained, parse_cells
from kist_reference import trace

DOC = Path(__file__).resolve().parents[3] / "docs" / "trace-format.md"


def _doc_record() -> trace.RunRecord:
    block = DOC.read_text().split("```\n650 KIST_RUN", 1)[1].split("```", 1)[0]
    return trace.parse_wire("650 KIST_RUN " + " ".join(block.split()))


def test_documented_example_timeline() -> None:
    # chan 5: one cell, drained by the end write W:5:514:0; chan 9: two cells, W:9:1028:0
    assert expected_drained(_doc_record()) == [(5, 2147483650, True), (9, 2147483651, True),
                                               (9, 2147483651, True)]


def test_a_partial_write_leaves_the_later_cell_in_the_outbuf() -> None:
    rec = _doc_record()
    line = "650 " + trace.to_wire(rec).replace("W:9:1028:0", "W:9:1028:514")
    assert expected_drained(trace.parse_wire(line))[1:] == [(9, 2147483651, True), (9, 2147483651, False)]


def test_consistent_report_passes_and_each_lie_is_caught() -> None:
    rec = _doc_record()
    good = parse_cells("5:2147483650:1000:200,9:2147483651:5000:300,9:2147483651:6000:400")
    ok = check_pairs([("r", rec, good)])
    assert ok.runs == 1 and ok.cells == 3 and ok.mismatches == [] and ok.queue_ms == [0.001, 0.005, 0.006]
    missing = [*good[:2], CellTime(9, 2147483651, 6000, None)]
    assert "timeline says drained" in check_pairs([("r", rec, missing)]).mismatches[0]
    late = [*good[:2], CellTime(9, 2147483651, 6000, rec.t1_ns - rec.t0_ns + 1)]
    assert "outside the run" in check_pairs([("r", rec, late)]).mismatches[0]
    assert "KIST_RUN flushed 3" in check_pairs([("r", rec, good[:2])]).mismatches[0]


def test_real_run_with_outbuf_left_at_the_end_checks_clean() -> None:
    """Regression: the end-of-run snapshot (13,878 bytes left) is not the outbuf the run began with."""
    import json

    data = json.loads((Path(__file__).resolve().parents[2] / "data" / "qtime-partial-write-run.json").read_text())
    rec = trace.parse_wire("650 KIST_RUN " + data["kist_run"])
    reported = parse_cells(data["cells"])
    drained = [d for _c, _circ, d in expected_drained(rec)]
    assert drained.count(True) == 37 and drained[36] and not drained[37]  # 5 on chan 6 + 32 on chan 4
    result = check_pairs([("r", rec, reported)])
    assert result.runs == 1 and result.cells == len(reported) == 64 and result.mismatches == []
