"""Shared by the report tests: a minimal store (contexts + records) for the raw-record readers."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest


def raw_store(tmp: Path, kind: str, rows: list[tuple[str, str, str, str]]) -> Path:
    """``rows``: (fingerprint, arm, data JSON, raw line) of records of one ``kind``."""
    db = tmp / "store.sqlite"
    con = sqlite3.connect(db)
    con.executescript("CREATE TABLE contexts (id INTEGER PRIMARY KEY, run_id TEXT, fingerprint TEXT, arm TEXT);"
                      "CREATE TABLE records (id INTEGER PRIMARY KEY, ctx INTEGER, ts REAL, kind TEXT, data TEXT, "
                      "raw TEXT);")
    ctx: dict[tuple[str, str], int] = {}
    for i, (fp, arm, data, raw) in enumerate(rows):
        if (fp, arm) not in ctx:
            ctx[(fp, arm)] = len(ctx) + 1
            con.execute("INSERT INTO contexts VALUES (?, 'r', ?, ?)", (ctx[(fp, arm)], fp, arm))
        con.execute("INSERT INTO records VALUES (?, ?, 0, ?, ?, ?)", (i + 1, ctx[(fp, arm)], kind, data, raw))
    con.commit()
    con.close()
    return db


@pytest.fixture
def make_raw_store() -> Callable[[Path, str, list[tuple[str, str, str, str]]], Path]:
    return raw_store
