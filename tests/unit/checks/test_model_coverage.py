"""The differential's model coverage: measured by coverage.py, named by function and condition."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import coverage
import pytest

from harness.checks.coverage import CONTEXT_PREFIX, ModelCoverage, _BranchNames, model_files
from harness.checks.differential import Recorded, check
from harness.errors import InputError
from harness.report.page import render
from harness.report.read import read_store as load
from kist_reference import trace

DATA = Path(__file__).resolve().parents[2] / "data"


def _recorded(name: str) -> list[Recorded]:
    return [Recorded("relayA", "KIST", trace.to_wire(r)) for r in trace.read_records(DATA / name)]


def test_replay_of_real_runs_reports_taken_and_missing_branches_by_name(tmp_path: Path) -> None:
    summary = check(_recorded("real-tor-0.4.9.11-runs.jsonl"), tmp_path, coverage=ModelCoverage())
    cov = summary.coverage
    assert cov is not None and cov.cumulative is None
    s = cov.store
    assert 0 < s.n_taken < s.branches and {m.module for m in s.modules} == {
        "scheduler", "channel", "ewma", "socket", "heap"}
    keys = s.keys()
    # every recorded KIST run pops a channel it can write to ...
    assert "scheduler.KistPolicy.run: if can -> true" in keys
    # ... and these real runs never saw a channel close mid-run (#23751): named, with its line
    closed = [b for b in s.missing if b.key == "scheduler.KistPolicy.run: if not chan.open -> true"]
    assert len(closed) == 1 and closed[0].describe().startswith(closed[0].key + " (kist_reference/scheduler.py:")
    assert len(keys) == len(s.taken)  # keys are unique
    assert cov.summary().startswith(f"model_branches={s.percent:.1f}% ({s.n_taken}/{s.branches})")


def test_cumulative_file_unions_stores_and_survives_a_reread(tmp_path: Path) -> None:
    data = tmp_path / "cum.sqlite"
    real = check(_recorded("real-tor-0.4.9.11-runs.jsonl"), tmp_path, coverage=ModelCoverage(data)).coverage
    synth = check(_recorded("example-runs.jsonl"), tmp_path, coverage=ModelCoverage(data)).coverage
    assert real is not None and synth is not None and synth.cumulative is not None
    assert synth.cumulative.keys() == real.store.keys() | synth.store.keys()
    assert synth.cumulative.n_taken > max(real.store.n_taken, synth.store.n_taken)
    again = check([], tmp_path, coverage=ModelCoverage(data)).coverage
    assert again is not None and again.cumulative is not None
    assert again.cumulative.keys() == synth.cumulative.keys() and again.store.n_taken == 0


def test_arcs_of_an_edited_model_are_kept_but_not_counted(tmp_path: Path) -> None:
    data = tmp_path / "cum.sqlite"
    old = coverage.CoverageData(basename=str(data))
    old.set_context(CONTEXT_PREFIX + "0123456789abcdef")
    sched = model_files()["scheduler"]
    old.add_arcs({sched: {(1, 2), (2, 3)}})
    old.write()
    cov = check(_recorded("example-runs.jsonl"), tmp_path, coverage=ModelCoverage(data)).coverage
    assert cov is not None and cov.cumulative is not None
    assert cov.older_versions == 1 and cov.cumulative.keys() == cov.store.keys()
    assert "older model version" in cov.lines()[1]


@pytest.mark.parametrize("content", [b"not a database\n", None])
def test_a_file_kist_harness_did_not_write_is_refused_untouched(tmp_path: Path, content: bytes | None) -> None:
    data = tmp_path / ".coverage"
    if content is not None:
        data.write_bytes(content)
    else:  # a real coverage.py file of some other program's test suite
        other = coverage.CoverageData(basename=str(data))
        other.add_lines({str(tmp_path / "app.py"): {1, 2}})
        other.write()
    before = data.read_bytes()
    with pytest.raises(InputError, match=r"does not overwrite it"):
        ModelCoverage(data)
    assert data.read_bytes() == before


def test_the_report_shows_the_table_and_the_unexercised_branches(tmp_path: Path) -> None:
    from harness.store.db import Store
    from harness.store.records import Context, Record

    store_path = tmp_path / "store.sqlite"
    with Store(store_path) as store:
        store.write_batch([(Context("r1", fingerprint="harness"), Record("variant", 1.0, {"variant": "base"}))])
    summary = check(_recorded("real-tor-0.4.9.11-runs.jsonl"), tmp_path, coverage=ModelCoverage())
    rendered = render(load(store_path, diff=summary), tmp_path / "report")
    md = rendered.markdown.read_text()
    assert "## Model branch coverage" in md and "| scheduler |" in md
    assert "`scheduler.KistPolicy.run: if not chan.open -> true (kist_reference/scheduler.py:" in md
    assert "Model decision branches taken by these runs:" in rendered.html.read_text()


def test_branch_names_give_statement_condition_and_direction() -> None:
    src = (
        "def f(x, ys):\n"          # 1
        "    if x > 1:\n"          # 2
        "        return 1\n"       # 3
        "    elif x:\n"            # 4
        "        pass\n"           # 5
        "    while x and (\n"      # 6
        "            x < 9):\n"    # 7
        "        x += 1\n"         # 8
        "    for y in ys:\n"       # 9
        "        if x > 1:\n"      # 10
        "            break\n"      # 11
        "    return 0\n"           # 12
    )
    n = _BranchNames("m", src)
    assert n.branch(2, 3).key == "m.f: if x > 1 -> true"
    assert n.branch(2, 4).key == "m.f: if x > 1 -> false"
    assert n.branch(4, 6).key == "m.f: elif x -> false"
    assert n.branch(6, 8).key == "m.f: while x and ( x < 9) -> true"
    assert n.branch(9, 10).key == "m.f: for y in ys -> iterates"
    assert n.branch(9, 12).key == "m.f: for y in ys -> done"
    assert n.branch(10, 11).key == "m.f: if x > 1 [#2] -> true"


def test_a_store_coverage_file_is_a_real_sqlite_coverage_file(tmp_path: Path) -> None:
    data = tmp_path / "model-coverage.sqlite"
    check(_recorded("example-runs.jsonl"), tmp_path, coverage=ModelCoverage(data))
    with sqlite3.connect(data) as db:
        assert db.execute("select count(*) from context").fetchone()[0] == 1
    assert not list(tmp_path.glob(".model-coverage-*"))  # the temp file was renamed into place


def test_every_branch_listed_unreachable_exists_and_is_not_taken_by_the_corpus(tmp_path: Path) -> None:
    from harness.checks.reachability import UNREACHABLE, why

    cov = check(_recorded("corpus-runs.jsonl"), tmp_path, coverage=ModelCoverage()).coverage
    assert cov is not None
    every = {b.key for b in cov.store.taken + cov.store.missing}
    for key in UNREACHABLE:  # a renamed branch or function must be renamed here too
        assert key in every or any(k.startswith(key) for k in every), key
    assert not [b.key for b in cov.store.taken if why(b.key) is not None]  # listed, yet a real run took it
    assert len(cov.store.unreachable()) + len(cov.store.gaps()) == len(cov.store.missing)
    assert "reachable=" in cov.summary()
