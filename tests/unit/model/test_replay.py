"""Replay against shipped records, and the `kist-harness model replay` exit codes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from harness.cli import main
from kist_reference import trace
from kist_reference.ideal import ideal_distance
from kist_reference.replay import replay_run

DATA = Path(__file__).resolve().parents[2] / "data"



def _doc_example() -> str:
    """The worked example of docs/trace-format.md, joined into its one-line wire form."""
    text = (Path(__file__).resolve().parents[3] / "docs" / "trace-format.md").read_text()
    block = text.split("```\n650 KIST_RUN", 1)[1].split("```", 1)[0]
    return "650 KIST_RUN " + " ".join(block.split())


DOC_EXAMPLE = _doc_example()


def test_the_format_documents_example_replays() -> None:
    res = replay_run(trace.parse_wire(DOC_EXAMPLE))
    assert res.divergence is None
    # 2 limits + 13 steps' checks + W set + 2 W befores + READD + FINAL + NEXT
    assert res.decisions == 2 + 13 + 1 + 2 + 3


def test_a_wrong_limit_is_the_first_divergence() -> None:
    rec = trace.parse_wire(DOC_EXAMPLE.replace("5:1:1:0:8688:0", "5:1:1:0:8689:0"))
    div = replay_run(rec).divergence
    assert div is not None and div.what == "limit" and div.decision == 0


def test_a_different_pop_is_reported_with_both_choices_and_context() -> None:
    rec = trace.parse_wire(DOC_EXAMPLE.replace("STEPS=p:5,", "STEPS=p:9,"))
    div = replay_run(rec).divergence
    assert div is not None
    assert (div.what, div.step, div.tor, div.model) == ("pop", 0, "p:9", "p:5")
    assert "channels_pending" in div.describe()


def test_a_stale_heap_key_decides_like_tor() -> None:
    # channel 9's head (0.5) is better than 5's (1.0) but 9 sits below 5 in the array:
    # Tor pops 5 (index 0) first; so must the model.
    line = DOC_EXAMPLE.replace("2147483651:0x1.8p+1:40:2", "2147483651:0x1p-1:40:2")
    assert replay_run(trace.parse_wire(line)).divergence is None


@pytest.mark.parametrize("name", ["example-runs.jsonl", "example-events.txt"])
def test_shipped_examples_pass(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "replay", str(DATA / name)]) == 0
    out = capsys.readouterr().out
    assert "divergences=0" in out.splitlines()[-1]


def test_divergent_file_exits_1_and_names_the_decision(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "replay", str(DATA / "divergent-run.jsonl")]) == 1
    out = capsys.readouterr().out
    assert "first divergence at decision" in out and "tor:" in out and "model:" in out
    assert out.splitlines()[-1].startswith("runs=2 ") and "divergences=1" in out


def test_malformed_file_exits_2_with_line_and_field(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "replay", str(DATA / "malformed-run.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "malformed-run.jsonl:3" in err and "sock[0].cwnd" in err and "Traceback" not in err


def test_missing_file_and_bad_policy_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "replay", str(tmp_path / "nope.jsonl")]) == 2
    assert main(["model", "replay", str(DATA / "example-runs.jsonl"), "--policy", "no_such_mod:X"]) == 2
    assert main(["model", "replay", str(DATA / "example-runs.jsonl"), "--policy", "json:JSONDecoder"]) == 2


def test_a_policy_subclass_is_handed_to_replay(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mypolicy.py").write_text(
        "from kist_reference.scheduler import KistPolicy\n"
        "class NoExtraSpace(KistPolicy):\n"
        "    def socket_limit(self, st, chan, read):\n"
        "        return 0\n")
    monkeypatch.chdir(tmp_path)
    assert main(["model", "replay", str(DATA / "example-runs.jsonl"), "--policy", "mypolicy:NoExtraSpace"]) == 1
    assert "(limit," in capsys.readouterr().out


def test_ideal_distance_counts_inversions(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["model", "replay", str(DATA / "example-runs.jsonl"), "--policy", "ideal"])
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("ideal: cells=")
    assert code == (1 if "inversions=0 " not in last else 0)


def test_ideal_sees_the_raw_cross_mux_comparison() -> None:
    # Channel 9's mux was last recalibrated 3 ticks before 5's. Raw, 5's head (1.0) beats
    # 9's (1.5), so Tor sends from 5; as of tick 43, 9's circuit is worth 1.5 * f^3 = 0.75:
    # the quieter circuit waited (an idle mux looks louder than it is).
    line = (DOC_EXAMPLE.replace("MUX=1:0:0:40:1,2:0:0:40:1", "MUX=1:0:0:43:1,2:0:0:40:1")
            .replace("2147483650:0x1p+0:40:1", "2147483650:0x1p+0:43:1")
            .replace("2147483651:0x1.8p+1:40:2", "2147483651:0x1.8p+0:40:2")
            .replace("f:5:2147483650:40:1200", "f:5:2147483650:43:1200"))
    rec = trace.parse_wire(line)
    res, dist = ideal_distance(rec)
    assert res.divergence is None
    assert dist.cells == 3 and dist.cross_channel == 1
    first = dist.firsts[0]
    assert first.step == 2 and "channel 9" in first.model and "(fresh EWMA 0.75" in first.model


def test_renumbered_records_still_replay() -> None:
    rec = trace.parse_wire(DOC_EXAMPLE)
    assert replay_run(dataclasses.replace(rec, run=99)).run == 99


def test_shipped_examples_are_what_the_recorder_writes(tmp_path: Path) -> None:
    """tests/data is regenerated with `python -m kist_reference.recorder --examples tests/data`."""
    from kist_reference.recorder import write_examples

    for name in write_examples(str(tmp_path)):
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), name
