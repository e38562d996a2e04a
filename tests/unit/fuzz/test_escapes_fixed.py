"""Each escape the fuzzing found, as a regression test at the entry point it came in by."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from harness.cli import main
from harness.config import load_scenario
from harness.errors import InputError
from harness.remote import inventory
from harness.store.db import Store, open_store
from harness.store.records import Context, Record
from kist_reference import trace

DATA = Path(__file__).parents[2] / "data"


def test_model_replay_of_a_zero_tick_length_exits_2_naming_the_field(tmp_path: Path, capsys) -> None:
    run = next(x for x in (DATA / "example-events.txt").read_text().splitlines() if x.startswith("650 KIST_RUN"))
    bad = tmp_path / "runs.txt"
    bad.write_text(run.replace("TICKLEN=1 ", "TICKLEN=0 ") + "\n")
    assert main(["model", "replay", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "TICKLEN" in err and "Traceback" not in err and f"{bad}:1" in err


def test_a_json_step_with_a_list_for_its_op_is_a_trace_error() -> None:
    rec = json.loads((DATA / "example-runs.jsonl").read_text().splitlines()[0])
    rec["steps"][0] = [[1], 2]
    with pytest.raises(trace.TraceError, match="steps\\[0\\]"):
        trace.from_dict(rec)


@pytest.mark.parametrize("what", ["scenario", "inventory"])
def test_a_file_that_is_not_utf8_is_an_input_error(tmp_path: Path, what: str) -> None:
    path = tmp_path / f"{what}.toml"
    path.write_bytes(b'[network]\nname = "\xff\xfe"\n')
    with pytest.raises(InputError, match="not UTF-8"):
        load_scenario(path) if what == "scenario" else inventory.load(path)


def test_an_inventory_key_under_an_unknown_users_home_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="'key'"):
        inventory.parse({"hosts": {"h": {"address": "a", "key": "~no-such-user-kist/id"}}}, tmp_path / "i.toml")


def _store(tmp_path: Path) -> Path:
    path = tmp_path / "s.db"
    with Store(path) as s:
        s.write_batch([(Context("r"), Record("BW", 1.0, {"read": 1, "written": 2}))])
    return path


@pytest.mark.parametrize("version", ["x", "1e9", ""])
def test_a_store_with_an_unreadable_schema_version_is_an_input_error_and_released(tmp_path: Path,
                                                                                    version: str) -> None:
    path = _store(tmp_path)
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (version,))
    db.commit()
    db.close()
    for readonly in (True, False):
        with pytest.raises(InputError, match="schema version"):
            Store(path, readonly=readonly)
    db = sqlite3.connect(path, timeout=0.1)  # no connection left open holds the file
    db.execute("BEGIN IMMEDIATE")
    db.rollback()
    db.close()


@pytest.mark.parametrize("damage", ["DROP TABLE contexts",
                                    "DROP TRIGGER records_no_update; UPDATE records SET data='{x'"])
def test_reading_a_damaged_store_is_an_input_error_naming_it(tmp_path: Path, damage: str) -> None:
    path = _store(tmp_path)
    db = sqlite3.connect(path)
    db.executescript(damage)
    db.close()
    with open_store(path, readonly=True) as s, pytest.raises(InputError, match=str(path)):
        list(s.records())


def test_a_huge_field_from_a_relay_does_not_fail_the_batch(tmp_path: Path) -> None:
    """KIST_OVERHEAD BYTES=10^30 parses (an int); its sum once failed the commit, and with it
    the collection ('Python int too large to convert to SQLite INTEGER')."""
    from harness.control.events import parse_line

    rec = parse_line("650 KIST_OVERHEAD RUN=1 SCHED=KIST T0=1 PENDING=1 SOCKETS=1 SOCKNS=1 RUNNS=1 CELLS=1 "
                     f"WRITES=1 BYTES={10**30} DIFF=0 NEXT=-1", 60.0)
    assert rec.kind == "KIST_OVERHEAD"
    with Store(tmp_path / "s.db") as s:
        assert s.write_batch([(Context("r"), rec)]) == 1
        assert s.count("KIST_OVERHEAD") == 1


def test_a_stored_kist_run_that_does_not_parse_fails_the_export_cleanly(tmp_path: Path) -> None:
    from harness.store.export import export_runs

    with Store(tmp_path / "s.db") as s:
        s.write_batch([(Context("r"), Record("KIST_RUN", 1.0, {}, "V=1 RUN=x"))])
        with pytest.raises(InputError, match="does not parse"):
            export_runs(s, tmp_path / "out.jsonl")
    assert not list(tmp_path.glob("*out.jsonl*")), "no half-written export left"
