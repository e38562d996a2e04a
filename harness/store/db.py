"""The collector's store: SQLite in WAL mode, append-only, committed in batches.

Crash safety comes from SQLite: a batch is one transaction, so after a crash (even
SIGKILL) the store opens with every batch committed before it and nothing half-written.
``synchronous=FULL`` makes a commit durable across power loss too; batching keeps that
affordable. Triggers reject UPDATE and DELETE on records: the store only grows.

Every record points at a context row (run id, relay fingerprint, arm, Tor version, patch
hash); the ``records_full`` view joins them, so each record reads back complete.

Per-minute aggregates (``harness.store.aggregates``) are added in the same transaction
as the records they summarise, so the report's queries over a day of records read
thousands of rows instead of millions, and a crash can never leave them out of step.
A store written before the aggregates existed (or with an older definition of them) gets
them rebuilt, in one transaction, the first time it is opened for writing; opened
read-only, it gets them computed in memory.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from harness.errors import InputError, StepError
from harness.store import aggregates as agg
from harness.store.records import Context, Record

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 60.0
REBUILD_CHUNK = 20000  # records per step of an aggregate rebuild: bounds its memory

# what a query may group by or filter on -> its column
_COLUMNS = {"arm": "c.arm", "fingerprint": "c.fingerprint", "run_id": "c.run_id", "sched": "a.sched"}
_UPSERT_COUNTS = ("INSERT INTO agg_counts VALUES (?,?,?,?,?,?) ON CONFLICT DO UPDATE "
                  "SET n = n + excluded.n, total = total + excluded.total")
_UPSERT_BINS = "INSERT INTO agg_bins VALUES (?,?,?,?,?,?) ON CONFLICT DO UPDATE SET n = n + excluded.n"

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
CREATE TABLE IF NOT EXISTS agg_counts (
    metric TEXT NOT NULL, ctx INTEGER NOT NULL, sched TEXT NOT NULL, minute INTEGER NOT NULL,
    n INTEGER NOT NULL, total NOT NULL,             -- no affinity: integer sums stay exact
    PRIMARY KEY (metric, ctx, sched, minute)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS agg_bins (
    metric TEXT NOT NULL, ctx INTEGER NOT NULL, sched TEXT NOT NULL, minute INTEGER NOT NULL,
    bin INTEGER NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (metric, ctx, sched, minute, bin)) WITHOUT ROWID;
CREATE VIEW IF NOT EXISTS records_full AS
    SELECT r.id, c.run_id, c.fingerprint, c.arm, c.tor_version, c.patch_hash,
           r.ts, r.kind, r.data, r.raw
    FROM records r JOIN contexts c ON r.ctx = c.id;
"""


_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=True, default=str)  # built once: json.dumps
_dumps = _ENCODER.encode                                                            # with options builds one per call


def _switch_to_wal(db: sqlite3.Connection) -> None:
    """Put the store in WAL mode, waiting out other openers.

    Why a loop: when two processes open a new store at once (a fleet's shards), SQLite
    can answer the journal-mode switch with "database is locked" at once, without calling
    the busy handler (it would deadlock otherwise), so ``timeout=`` does not cover it.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _create_whole(path: Path) -> None:
    """Create a new store under a temporary name and link it into place, so no reader ever
    opens a store without its tables.

    Why: ``sqlite3.connect`` makes an empty file at once, and a reader polling for the
    store (``report`` on a live collection, a test waiting for its sessions) that opens it
    before the writer's schema commits finds no ``meta`` table and calls the store foreign.
    ``os.link`` never replaces: when another opener linked its store first, ours is
    dropped and theirs used. A file system without hard links gets the store created in
    place, as before.
    """
    tmp = path.with_name(f".{path.name}.creating-{os.getpid()}-{threading.get_ident()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(tmp, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")   # kept in the file's header
            db.executescript(f"BEGIN;\n{_SCHEMA}\nINSERT INTO meta VALUES ('schema_version', "
                             f"'{int(SCHEMA_VERSION)}');\nINSERT INTO meta VALUES "
                             f"('aggregates_version', '{agg.VERSION}');\nCOMMIT;")
        finally:
            db.close()   # the last connection checkpoints and removes the -wal and -shm files
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass         # another opener linked its store first
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOSYS, errno.EOPNOTSUPP):
                raise    # otherwise: no hard links here, the caller creates the store in place
    except (sqlite3.Error, OSError) as exc:
        raise StepError(f"creating the store {path} failed ({exc}): check that its directory is "
                        "writable and has free space.") from exc
    finally:
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{tmp}{suffix}")


class Store:
    """An open store. Writes come from one thread (the writer); reads from anywhere else
    should open their own ``Store`` (WAL lets readers run beside the writer)."""

    def __init__(self, path: Path | str, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        if not readonly and not self.path.exists():
            _create_whole(self.path)
        try:
            if readonly:
                if not self.path.exists():
                    raise InputError(f"store {self.path} does not exist: give the --out path "
                                     "of an earlier `kist-harness collect`.")
                self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True,
                                          check_same_thread=False, timeout=BUSY_TIMEOUT_S)
            else:
                # several collectors may append to one store (one per relay): a writer
                # waits for another's commit instead of failing with "database is locked"
                self.db = sqlite3.connect(self.path, check_same_thread=False,
                                          isolation_level=None, timeout=BUSY_TIMEOUT_S)
                _switch_to_wal(self.db)
                self.db.execute("PRAGMA synchronous=FULL")
                # one transaction: a process stopped half-way (a signal to a fleet's shards)
                # must not leave tables without their schema version for the next opener
                self.db.executescript(f"BEGIN IMMEDIATE;\n{_SCHEMA}\nINSERT OR IGNORE INTO meta VALUES "
                                      f"('schema_version', '{int(SCHEMA_VERSION)}');\nCOMMIT;")
            version = self.db.execute(
                "SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except (sqlite3.DatabaseError, ValueError) as exc:  # ValueError: text that is not UTF-8
            self._close_quietly()
            raise InputError(f"{self.path} is not a kist-harness store ({exc}): "
                             "give a new path or one written by `kist-harness collect`.") from exc
        except BaseException:
            self._close_quietly()
            raise
        if version is None or str(version[0]) != str(SCHEMA_VERSION):
            self._close_quietly()
            raise InputError(f"store {self.path} has schema version "
                             f"{version[0] if version else 'none'!r}, this harness reads "
                             f"{SCHEMA_VERSION}: collect into a new store.")
        self._ctx_ids: dict[Context, int] = {}
        self._agg_db: sqlite3.Connection | None = None  # where the aggregates are read from
        try:
            with self._reading():
                stale = not readonly and not self._aggregates_current(self.db)
            if stale:
                self.rebuild_aggregates(only_if_stale=True)
        except BaseException:
            self._close_quietly()
            raise

    def _close_quietly(self) -> None:
        """A store that failed to open releases its file (and any lock) at once."""
        db = getattr(self, "db", None)
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                db.close()

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """A damaged or foreign store (a missing table, a corrupt page, a record that is not
        JSON) is bad input: one error naming the store, never a traceback."""
        try:
            yield
        except (sqlite3.Error, ValueError) as exc:  # json.JSONDecodeError is a ValueError
            raise InputError(f"store {self.path} cannot be read ({type(exc).__name__}: {exc}): it is damaged "
                             f"or was not written by kist-harness. Check it with `sqlite3 {self.path} "
                             "'PRAGMA integrity_check'`, or collect into a new store.") from exc

    def close(self) -> None:
        if self._agg_db is not None and self._agg_db is not self.db:
            self._agg_db.close()
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
                rows = []
                inc = agg.Increments()
                last: tuple[Context | None, int] = (None, 0)
                for ctx, rec in items:
                    # a batch is mostly one context: skip hashing it per record
                    cid = last[1] if ctx is last[0] else self._ctx_id(ctx)
                    last = (ctx, cid)
                    rows.append((cid, rec.ts, str(rec.kind), _dumps(rec.data), rec.raw))
                    inc.add(cid, rec.kind, rec.ts, rec.data, rec.raw)
                self.db.executemany("INSERT INTO records (ctx, ts, kind, data, raw) "
                                    "VALUES (?,?,?,?,?)", rows)
                _apply(self.db, inc)
                self.db.execute("COMMIT")
                if inc.unfit:
                    log.warning("%d records of a batch do not fit their kind: stored, not aggregated", inc.unfit)
            except BaseException:
                self._rollback()
                self._ctx_ids.clear()  # ids inserted in the rolled-back transaction are gone
                raise
        except sqlite3.Error as exc:
            raise StepError(f"writing to the store {self.path} failed: {exc}") from exc
        return len(rows)

    def _rollback(self) -> None:
        """Roll back what is open. SQLite has already rolled back after some errors (a full
        disk: SQLITE_FULL); a second ROLLBACK would then fail and hide the real error."""
        if self.db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self.db.execute("ROLLBACK")

    # -- aggregates --------------------------------------------------------------------

    @staticmethod
    def _aggregates_current(db: sqlite3.Connection) -> bool:
        row = db.execute("SELECT value FROM meta WHERE key='aggregates_version'").fetchone()
        return row is not None and row[0] == str(agg.VERSION)

    def rebuild_aggregates(self, *, only_if_stale: bool = False) -> None:
        """Recompute every aggregate from the records, in one transaction (idempotent: a
        crash half-way leaves the old state, and the next open for writing starts again).
        ``only_if_stale``: unless they are current (checked inside the transaction, so of
        several collectors opening one old store, one rebuilds)."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                if not (only_if_stale and self._aggregates_current(self.db)):
                    n = _rebuild(self.db, self.db)
                    self.db.execute("INSERT OR REPLACE INTO meta VALUES ('aggregates_version', ?)",
                                    (str(agg.VERSION),))
                    if n:
                        log.info("rebuilt the aggregates of %s from %d records", self.path, n)
                self.db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        except (sqlite3.Error, ValueError) as exc:  # ValueError: a record that is not JSON
            raise StepError(f"rebuilding the aggregates of the store {self.path} failed: {exc}") from exc

    def _aggregates(self) -> sqlite3.Connection:
        """The connection holding current aggregates: the store's own, or (a read-only store
        written before they existed) a private in-memory copy computed from its records."""
        if self._agg_db is None:
            if self._aggregates_current(self.db):
                self._agg_db = self.db
            else:
                mem = sqlite3.connect(":memory:", check_same_thread=False)
                mem.executescript(_SCHEMA)
                mem.executemany("INSERT INTO contexts VALUES (?,?,?,?,?,?)",
                                self.db.execute("SELECT id, run_id, fingerprint, tor_version, patch_hash,"
                                                " arm FROM contexts"))
                _rebuild(self.db, mem)
                self._agg_db = mem
        return self._agg_db

    def _agg_query(self, table: str, metric: str, by: Sequence[str], where: agg.Selection | None,
                   select: str, extra_group: str = "") -> list[tuple[Any, ...]]:
        """Rows of (label columns..., [extra_group,] select...) grouped by label (and extra)."""
        known = agg.COUNTERS if table == "agg_counts" else agg.HISTOGRAMS
        if metric not in known:
            raise InputError(f"no aggregate {metric!r}; known: {', '.join(sorted(known))}")
        unknown = [b for b in by if b not in _COLUMNS]
        if unknown:
            raise InputError(f"cannot group aggregates by {unknown[0]!r}; use any of {', '.join(_COLUMNS)}")
        sel = where or agg.Selection()
        conds = ["a.metric = ?"]
        args: list[Any] = [metric]
        for name in _COLUMNS:
            value = getattr(sel, name)
            if value is not None:
                conds.append(f"{_COLUMNS[name]} = ?")
                args.append(value)
        for bound, op in ((sel.since, ">="), (sel.until, "<")):
            if bound is not None:
                conds.append(f"a.minute {op} ?")
                args.append(int(bound // agg.MINUTE_S))
        groups = [_COLUMNS[b] for b in by] + ([extra_group] if extra_group else [])
        sql = (f"SELECT {', '.join([*groups, select])} FROM {table} a JOIN contexts c ON a.ctx = c.id "
               f"WHERE {' AND '.join(conds)}" + (f" GROUP BY {', '.join(groups)}" if groups else ""))
        with self._reading():
            return [row for row in self._aggregates().execute(sql, args).fetchall() if row[-1] is not None]

    def totals(self, metric: str, *, by: Sequence[str] = ("arm",), where: agg.Selection | None = None
               ) -> dict[tuple[str, ...], tuple[int, float]]:
        """label -> (n, total) of a counter (``aggregates.COUNTERS``). A label is the values
        of the ``by`` columns (any of arm, fingerprint, run_id, sched; ``()`` for one label
        ``()``); ``where`` selects contexts, scheduler and time range."""
        k = len(by)
        return {tuple(row[:k]): (int(row[k]), row[k + 1])
                for row in self._agg_query("agg_counts", metric, by, where, "sum(a.n), sum(a.total)")}

    def minute_series(self, metric: str, *, by: Sequence[str] = ("arm",), where: agg.Selection | None = None
                      ) -> dict[tuple[str, ...], list[tuple[float, int, float]]]:
        """label -> [(minute start in s since the epoch, n, total)] of a counter, in time
        order: a per-minute panel (runs, decisions, cells, goodput) without the records."""
        k = len(by)
        out: dict[tuple[str, ...], list[tuple[float, int, float]]] = {}
        for row in sorted(self._agg_query("agg_counts", metric, by, where, "sum(a.n), sum(a.total)", "a.minute")):
            out.setdefault(tuple(row[:k]), []).append((float(row[k] * agg.MINUTE_S), int(row[k + 1]), row[k + 2]))
        return out

    def histogram(self, metric: str, *, by: Sequence[str] = ("arm",), where: agg.Selection | None = None
                  ) -> dict[tuple[str, ...], agg.Histogram]:
        """label -> the log-binned histogram of a value (``aggregates.HISTOGRAMS``), summed
        over minutes: what a CDF or a quantile over a whole day needs."""
        k = len(by)
        counts: dict[tuple[str, ...], dict[int, int]] = {}
        for row in self._agg_query("agg_bins", metric, by, where, "sum(a.n)", "a.bin"):
            counts.setdefault(tuple(row[:k]), {})[int(row[k])] = int(row[k + 1])
        return {label: agg.Histogram(metric, c) for label, c in counts.items()}

    # -- reading -----------------------------------------------------------------------

    def count(self, kind: str | None = None) -> int:
        with self._reading():
            if kind is None:
                return int(self.db.execute("SELECT count(*) FROM records").fetchone()[0])
            return int(self.db.execute("SELECT count(*) FROM records WHERE kind=?",
                                       (kind,)).fetchone()[0])

    def kinds(self) -> dict[str, int]:
        with self._reading():
            return dict(self.db.execute("SELECT kind, count(*) FROM records GROUP BY kind"))

    def contexts(self) -> list[tuple[int, Context]]:
        with self._reading():
            return [(row[0], Context(*row[1:])) for row in self.db.execute(
                "SELECT id, run_id, fingerprint, tor_version, patch_hash, arm FROM contexts")]

    def values(self, kind: str, field: str, *, run_id: str | None = None
               ) -> list[tuple[str, float]]:
        """(arm, value) of one numeric field of one record kind, in stored order: what a
        CDF or a per-arm comparison needs, read by SQL without decoding whole records."""
        sql = ("SELECT c.arm, json_extract(r.data, ?) FROM records r JOIN contexts c ON r.ctx = c.id "
               "WHERE r.kind = ?" + (" AND c.run_id = ?" if run_id is not None else "") + " ORDER BY r.id")
        args: list[Any] = [f"$.{field}", kind] + ([run_id] if run_id is not None else [])
        with self._reading():
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
        with self._reading():
            for row in self.db.execute(sql, args):
                yield Context(*row[:5]), Record(row[6], row[5], json.loads(row[7]), row[8])


def _sqlite_number(total: int | float) -> int | float:
    """SQLite integers are 64-bit: a sum beyond that (one absurd field from a relay is
    enough) is stored as a float rather than failing the whole batch."""
    return total if isinstance(total, float) or -(2**63) <= total < 2**63 else float(total)


def _apply(db: sqlite3.Connection, inc: agg.Increments) -> None:
    """Add increments to the aggregate tables (inside the caller's transaction)."""
    if inc.counters:
        db.executemany(_UPSERT_COUNTS, [(*k, v[0], _sqlite_number(v[1])) for k, v in inc.counters.items()])
    if inc.bins:
        db.executemany(_UPSERT_BINS, [(*k, b, n) for k, hist in inc.bins.items() for b, n in hist.items()])


def _rebuild(src: sqlite3.Connection, dst: sqlite3.Connection) -> int:
    """Aggregates of every record of src, written into dst's (emptied) tables; the caller
    holds the transaction. Returns how many records were read."""
    dst.execute("DELETE FROM agg_counts")
    dst.execute("DELETE FROM agg_bins")
    kinds = tuple(agg.KINDS)
    cursor = src.execute(f"SELECT ctx, kind, ts, data, raw FROM records WHERE kind IN "
                         f"({','.join('?' * len(kinds))}) ORDER BY id", kinds)
    n = 0
    while rows := cursor.fetchmany(REBUILD_CHUNK):
        n += len(rows)
        _apply(dst, agg.increments((c, k, ts, json.loads(d), raw) for c, k, ts, d, raw in rows))
    return n


@contextlib.contextmanager
def open_store(path: Path | str, *, readonly: bool = False) -> Iterator[Store]:
    """A Store, closed on the way out whatever happens."""
    store = Store(path, readonly=readonly)
    try:
        yield store
    finally:
        store.close()
