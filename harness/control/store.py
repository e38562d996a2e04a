"""The collector's store: SQLite in WAL mode, append-only, committed in batches.

Crash safety comes from SQLite: a batch is one transaction, so after a crash (even
SIGKILL) the store opens with every batch committed before it and nothing half-written.
``synchronous=FULL`` makes a commit durable across power loss too; batching keeps that
affordable. Triggers reject UPDATE and DELETE on records: the store only grows.

Every record points at a context row (run id, relay fingerprint, arm, Tor version, patch
hash); the ``records_full`` view joins them, so each record reads back complete.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from harness.control.records import Context, Record
from harness.errors import InputError, StepError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS contexts (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL, fingerprint TEXT NOT NULL, tor_version TEXT NOT NULL,
    patch_hash TEXT NOT NULL, arm TEXT NOT NULL,
    UNIQUE (run_id, fingerprint, tor_version, patch_hash, arm));
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY,
    ctx INTEGER NOT NULL REFERENCES contexts(id),
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    raw TEXT);          -- verbatim wire text: KIST_RUN payloads, malformed lines
-- the report's queries: one kind over a time range; one kind for one run/arm
CREATE INDEX IF NOT EXISTS records_kind_ts ON records (kind, ts);
CREATE INDEX IF NOT EXISTS records_ctx_kind ON records (ctx, kind);
CREATE TRIGGER IF NOT EXISTS records_no_update BEFORE UPDATE ON records
    BEGIN SELECT RAISE(ABORT, 'the store is append-only'); END;
CREATE TRIGGER IF NOT EXISTS records_no_delete BEFORE DELETE ON records
    BEGIN SELECT RAISE(ABORT, 'the store is append-only'); END;
CREATE VIEW IF NOT EXISTS records_full AS
    SELECT r.id, c.run_id, c.fingerprint, c.arm, c.tor_version, c.patch_hash,
           r.ts, r.kind, r.data, r.raw
    FROM records r JOIN contexts c ON r.ctx = c.id;
"""


def _dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), allow_nan=True, default=str)


class Store:
    """An open store. Writes come from one thread (the writer); reads from anywhere else
    should open their own ``Store`` (WAL lets readers run beside the writer)."""

    def __init__(self, path: Path | str, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        try:
            if readonly:
                if not self.path.exists():
                    raise InputError(f"store {self.path} does not exist: give the --out path "
                                     "of an earlier `kist-harness collect`.")
                self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True,
                                          check_same_thread=False, timeout=BUSY_TIMEOUT_S)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                # several collectors may append to one store (one per relay): a writer
                # waits for another's commit instead of failing with "database is locked"
                self.db = sqlite3.connect(self.path, check_same_thread=False,
                                          isolation_level=None, timeout=BUSY_TIMEOUT_S)
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=FULL")
                self.db.executescript(_SCHEMA)
                self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                                (str(SCHEMA_VERSION),))
            version = self.db.execute(
                "SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise InputError(f"{self.path} is not a kist-harness store ({exc}): "
                             "give a new path or one written by `kist-harness collect`.") from exc
        if version is None or int(version[0]) != SCHEMA_VERSION:
            raise InputError(f"store {self.path} has schema version "
                             f"{version[0] if version else 'none'}, this harness reads "
                             f"{SCHEMA_VERSION}: collect into a new store.")
        self._ctx_ids: dict[Context, int] = {}

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing -----------------------------------------------------------------------

    def _ctx_id(self, ctx: Context) -> int:
        cid = self._ctx_ids.get(ctx)
        if cid is None:
            key = (ctx.run_id, ctx.fingerprint, ctx.tor_version, ctx.patch_hash, ctx.arm)
            self.db.execute("INSERT OR IGNORE INTO contexts (run_id, fingerprint, tor_version,"
                            " patch_hash, arm) VALUES (?,?,?,?,?)", key)
            cid = self.db.execute(
                "SELECT id FROM contexts WHERE run_id=? AND fingerprint=? AND tor_version=? "
                "AND patch_hash=? AND arm=?", key).fetchone()[0]
            self._ctx_ids[ctx] = cid
        return cid

    def write_batch(self, items: Iterable[tuple[Context, Record]]) -> int:
        """Append records in one transaction; return how many. All or none are stored."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                rows = [(self._ctx_id(ctx), rec.ts, str(rec.kind), _dumps(rec.data), rec.raw)
                        for ctx, rec in items]
                self.db.executemany("INSERT INTO records (ctx, ts, kind, data, raw) "
                                    "VALUES (?,?,?,?,?)", rows)
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                self._ctx_ids.clear()  # ids inserted in the rolled-back transaction are gone
                raise
        except sqlite3.Error as exc:
            raise StepError(f"writing to the store {self.path} failed: {exc}") from exc
        return len(rows)

    # -- reading -----------------------------------------------------------------------

    def count(self, kind: str | None = None) -> int:
        if kind is None:
            return int(self.db.execute("SELECT count(*) FROM records").fetchone()[0])
        return int(self.db.execute("SELECT count(*) FROM records WHERE kind=?",
                                   (kind,)).fetchone()[0])

    def kinds(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT kind, count(*) FROM records GROUP BY kind"))

    def contexts(self) -> list[tuple[int, Context]]:
        return [(row[0], Context(*row[1:])) for row in self.db.execute(
            "SELECT id, run_id, fingerprint, tor_version, patch_hash, arm FROM contexts")]

    def values(self, kind: str, field: str, *, run_id: str | None = None
               ) -> list[tuple[str, float]]:
        """(arm, value) of one numeric field of one record kind, in stored order: what a
        CDF or a per-arm comparison needs, read by SQL without decoding whole records."""
        sql = ("SELECT c.arm, json_extract(r.data, ?) FROM records r JOIN contexts c ON r.ctx = c.id "
               "WHERE r.kind = ?" + (" AND c.run_id = ?" if run_id is not None else "") + " ORDER BY r.id")
        args: list[Any] = [f"$.{field}", kind] + ([run_id] if run_id is not None else [])
        return [(arm, v) for arm, v in self.db.execute(sql, args) if v is not None]

    def records(self, kind: str | None = None, *, since: float | None = None,
                until: float | None = None, arm: str | None = None,
                run_id: str | None = None) -> Iterator[tuple[Context, Record]]:
        """Records in stored order, filtered; each with its full context."""
        where: list[str] = []
        args: list[Any] = []
        for column, value in (("r.kind", kind), ("c.arm", arm), ("c.run_id", run_id)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if since is not None:
            where.append("r.ts >= ?")
            args.append(since)
        if until is not None:
            where.append("r.ts < ?")
            args.append(until)
        sql = ("SELECT c.run_id, c.fingerprint, c.tor_version, c.patch_hash, c.arm, "
               "r.ts, r.kind, r.data, r.raw FROM records r JOIN contexts c ON r.ctx = c.id"
               + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY r.id")
        for row in self.db.execute(sql, args):
            yield Context(*row[:5]), Record(row[6], row[5], json.loads(row[7]), row[8])


@contextlib.contextmanager
def open_store(path: Path | str, *, readonly: bool = False) -> Iterator[Store]:
    """A Store, closed on the way out whatever happens."""
    store = Store(path, readonly=readonly)
    try:
        yield store
    finally:
        store.close()
