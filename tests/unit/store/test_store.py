"""The store: append-only, all-or-nothing batches, full context on every record, export."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from harness.control.events import parse_line
from harness.errors import InputError, StepError
from harness.store.db import Store, open_store
from harness.store.export import export_runs
from harness.store.records import Context, Record

DATA = Path(__file__).parents[2] / "data" / "control" / "events.txt"
CTX = Context("run1", "F" * 40, "0.4.9.11", "abc123", "KIST")


def test_every_record_reads_back_with_its_context(tmp_path: Path) -> None:
    with open_store(tmp_path / "s.db") as s:
        s.write_batch([(CTX, Record("BW", 1.0, {"read": 1, "written": 2})),
                       (Context("run1", "F" * 40, "0.4.9.11", "abc123", "Vanilla"),
                        Record("BW", 2.0, {"read": 3, "written": 4}))])
    with open_store(tmp_path / "s.db", readonly=True) as s:
        rows = list(s.records("BW"))
        assert [(c.arm, r.data["written"]) for c, r in rows] == [("KIST", 2), ("Vanilla", 4)]
        assert rows[0][0] == CTX
        assert [r.ts for _c, r in s.records(arm="Vanilla")] == [2.0]
        assert list(s.records(since=1.5)) == rows[1:]
        assert s.values("BW", "written") == [("KIST", 2), ("Vanilla", 4)]
        assert s.values("BW", "written", run_id="other") == []
        full = s.db.execute("SELECT run_id, fingerprint, arm, tor_version, patch_hash FROM records_full").fetchall()
        assert full[0] == ("run1", "F" * 40, "KIST", "0.4.9.11", "abc123")


def test_append_only(tmp_path: Path) -> None:
    with open_store(tmp_path / "s.db") as s:
        s.write_batch([(CTX, Record("BW", 1.0, {}))])
        for sql in ("DELETE FROM records", "UPDATE records SET kind='x'"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                s.db.execute(sql)
        assert s.count() == 1


def test_a_failed_batch_stores_nothing(tmp_path: Path) -> None:
    with open_store(tmp_path / "s.db") as s:
        s.write_batch([(CTX, Record("BW", 1.0, {}))])

        class Boom:
            def __str__(self) -> str:
                raise RuntimeError("disk on fire")

        with pytest.raises(RuntimeError):
            s.write_batch([(CTX, Record("BW", 2.0, {})), (CTX, Record(Boom(), 3.0, {}))])  # type: ignore[arg-type]
        assert s.count() == 1
        s.write_batch([(Context("other"), Record("BW", 4.0, {}))])  # contexts still consistent
        assert s.count() == 2 and len(s.contexts()) == 2


def test_wal_mode_and_schema_check(tmp_path: Path) -> None:
    with open_store(tmp_path / "s.db") as s:
        assert s.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    bad = tmp_path / "not.db"
    bad.write_text("hello")
    with pytest.raises(InputError, match="not a kist-harness store"):
        open_store(bad).__enter__()
    with pytest.raises(InputError, match="does not exist"):
        open_store(tmp_path / "missing.db", readonly=True).__enter__()
    with open_store(tmp_path / "s.db", readonly=True) as s, pytest.raises(StepError):
        s.write_batch([(CTX, Record("BW", 1.0, {}))])


def test_export_is_replayable_json_lines(tmp_path: Path) -> None:
    from kist_reference import trace

    lines = [line.split("\t", 1)[1] for line in DATA.read_text().splitlines()
             if line.startswith(("KIST_RUN\t", "error\t650 KIST_RUN"))]
    with open_store(tmp_path / "s.db") as s:
        s.write_batch([(CTX, parse_line(line, float(i))) for i, line in enumerate(lines)])
        assert export_runs(s, tmp_path / "runs.jsonl") == 2  # the malformed ones are not runs
    out = (tmp_path / "runs.jsonl").read_text().splitlines()
    assert [json.loads(o)["run"] for o in out] == [7, 67]
    good = [ln for ln in lines if parse_line(ln).kind == "KIST_RUN"]
    assert list(trace.read_records(tmp_path / "runs.jsonl")) == [trace.parse_wire(ln) for ln in good]


def test_two_writers_on_one_store(tmp_path: Path) -> None:
    """`kist-harness run` gives each relay's collector its own Store on one file."""
    import threading

    path = tmp_path / "s.db"
    stores = [Store(path) for _ in range(2)]
    try:
        def write(store, arm: str) -> None:  # type: ignore[no-untyped-def]
            for k in range(20):
                store.write_batch([(Context("r", arm=arm), Record("BW", float(k), {"i": i}))
                                   for i in range(500)])

        threads = [threading.Thread(target=write, args=(s, a)) for s, a in zip(stores, "AB", strict=True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert stores[0].count() == 20_000 and len(stores[0].contexts()) == 2
    finally:
        for s in stores:
            s.close()
