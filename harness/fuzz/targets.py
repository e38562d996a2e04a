"""The fuzz targets: each entry point a user or a relay can feed, and what it may raise.

``Target.feed(rng)`` makes one mutated input from the target's seeds and drives it through
the entry point the way the CLI or the collector would. It returns ``True`` when the input
was accepted, ``False`` when it was refused with a documented error (``documented``), and
lets anything else propagate: the runner counts that as an escape.
"""

from __future__ import annotations

import contextlib
import json
import random
import sqlite3
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.fuzz import mutate
from kist_reference.trace import TraceError

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"

# The inventory of docs/remote.md, with a key file that exists (made next to it)
INVENTORY = """\
[defaults]
user = "root"
known_hosts = "known_hosts"

[hosts.relay1]
address = "192.0.2.10"
key = "id_ed25519"
run = "systemd"
unit = "tor@default"
defaults_torrc = "/usr/share/tor/tor-service-defaults-torrc"
control_socket = "/run/tor/kist-control"
allow = ["build"]
extra_torrc = "relay1.torrc"

[hosts.relay2]
address = "relay2.example"
port = 2222
agent = true
sudo = true
run = "process"
pid_file = "/run/tor/tor.pid"
control_port = 9051
verify_timeout_s = 30
"""


@dataclass
class Target:
    """One entry point; ``feed`` is called once per input."""

    name: str
    what: str
    feed: Callable[[random.Random], bool]
    documented: tuple[type[BaseException], ...]


def _lines(path: Path, prefix: str = "") -> list[str]:
    if not path.is_file():
        return []
    return [line.rstrip("\n") for line in path.read_text().splitlines()
            if line.strip() and not line.startswith("#") and line.startswith(prefix)]


def _real_wire_runs(limit: int = 40) -> list[str]:
    """KIST_RUN wire lines: the real relay's records (JSON in tests/data) in their wire form."""
    from kist_reference import trace
    from kist_reference.recorder import SimRelay

    lines = [f"650 {trace.to_wire(trace.from_json(j))}"
             for j in _lines(DATA / "real-tor-0.4.9.11-runs.jsonl")[:limit]]
    for sched in ("KIST", "KISTLite", "Vanilla"):  # synthetic ones cover every scheduler and op
        lines += [f"650 {trace.to_wire(r)}" for r in SimRelay(seed=3, n_channels=3, sched=sched).records(6)]
    return lines


# --------------------------------------------------------------------------- events


def event_seeds() -> list[str]:
    seeds = [line.split("\t", 1)[1] for line in _lines(DATA / "control" / "events.txt") if "\t" in line]
    seeds += _lines(DATA / "example-events.txt", "650 ")
    seeds += _lines(ROOT / "tests" / "unit" / "build" / "data" / "exit-relay-runs.wire", "650 ")
    seeds += _real_wire_runs(20)
    seeds += ["650 KIST_QTIME RUN=7 SCHED=KIST T0=1000 N=2 CELLS=5:9:1500:-,5:9:-:20000",
              "650 KIST_KQTIME CHAN=5 T=1000 BYTES=4000 SCHEDNS=- SNDNS=2500",
              "650 KIST_OVERHEAD RUN=67 SCHED=KIST T0=27770992885 PENDING=1 SOCKETS=1 SOCKNS=7253 "
              "RUNNS=65442 CELLS=2 WRITES=1 BYTES=1028 DIFF=0 NEXT=-1",
              "650 BW 15 25", "650 CIRC_BW ID=11 READ=272 WRITTEN=817 TIME=2014-11-07T18:47:11.110734"]
    return seeds


def make_events(tmp: Path) -> Target:
    """A wire line into the collector: stem's framing, the event parsers, the KIST_RUN
    payload parser the writer uses, the per-minute aggregates of the record, and (in
    batches, as the writer commits) the store: a failed commit would stop a collection."""
    from harness.control.events import parse_line
    from harness.store import aggregates
    from harness.store.db import Store
    from harness.store.records import Context
    from kist_reference import trace

    seeds = event_seeds()
    batch: list[Any] = []
    ctx = Context("fuzz-events")

    def feed(rng: random.Random) -> bool:
        # bytes off the socket, decoded as stem decodes them ('replace')
        line = mutate.mutate_text(rng, rng.choice(seeds)).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        record = parse_line(line, 1.0)  # documented: never raises (malformed -> an ERROR record)
        aggregates.Increments().add(1, record.kind, record.ts, record.data, record.raw)
        json.dumps(record.data, allow_nan=True, default=str)  # what the store writes
        if " KIST_RUN " in f" {line}":
            with contextlib.suppress(TraceError):  # the writer's path: trace's own error type only
                trace.parse_wire(line.split("KIST_RUN", 1)[1])
        batch.append((ctx, record))
        if len(batch) >= 250:
            path = tmp / "events.db"
            try:
                with Store(path) as store:
                    store.write_batch(batch)  # documented: never raises for any record
            finally:
                batch.clear()
                for side in ("", "-wal", "-shm"):
                    Path(f"{path}{side}").unlink(missing_ok=True)
        return record.kind != "error"

    return Target("events", "KIST_RUN/KIST_QTIME/KIST_KQTIME/KIST_OVERHEAD and standard event lines "
                  "(collector)", feed, ())


# --------------------------------------------------------------------------- run records / replay


def record_seeds() -> list[str]:
    seeds = _lines(DATA / "real-tor-0.4.9.11-runs.jsonl")[:60] + _lines(DATA / "example-runs.jsonl")
    seeds += _lines(DATA / "divergent-run.jsonl") + _lines(DATA / "example-events.txt", "650 ")
    seeds += _real_wire_runs(20)
    return seeds


def _replay_one(text: str) -> bool:
    from kist_reference import replay, trace
    from kist_reference.ideal import ideal_distance

    try:
        rec = trace.parse_line(text)
    except TraceError:
        return False
    replay.replay_run(rec)       # the CLI catches nothing here
    ideal_distance(rec)
    return True


def make_records(tmp: Path) -> Target:
    """A run record (JSON line or KIST_RUN line) into `kist-harness model replay`: the
    reader, the faithful replay and the ideal distance. One input in ten goes through a
    file (`read_records`, as the CLI reads), so bit flips meet the decoder too."""
    from kist_reference import trace

    seeds = record_seeds()
    path = tmp / "runs.jsonl"

    def feed(rng: random.Random) -> bool:
        seed = rng.choice(seeds)
        if seed.startswith("{") and rng.random() < 0.5:
            text = json.dumps(mutate.mutate_structure(rng, json.loads(seed)))
        else:
            text = mutate.mutate_text(rng, seed)
        if rng.random() < 0.1:
            path.write_bytes(text.encode("utf-8", "surrogateescape") + b"\n")
            try:
                records = list(trace.read_records(path))
            except TraceError:
                return False
            return all(_replay_one(trace.to_json(r)) for r in records)
        return _replay_one(text)

    return Target("records", "run records, JSON lines and KIST_RUN lines (`model replay`: read, replay, "
                  "ideal distance)", feed, (TraceError,))


# --------------------------------------------------------------------------- TOML files


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v) if v == v and abs(v) != float("inf") else ("nan" if v != v else
                                                                 ("inf" if v > 0 else "-inf"))
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(x)}" for k, x in v.items()) + "}"
    return '""'  # None: TOML has no null


def to_toml(data: dict[str, Any]) -> str:
    """A small TOML writer (inline tables below the top level): enough to round-trip a
    mutated scenario or inventory through the file reader."""
    return "\n".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in data.items()) + "\n"


def make_scenarios(tmp: Path) -> Target:
    """A scenario file into ``harness.config.load_scenario`` (text mutations, written to a
    file) or its parsed form into ``parse_scenario`` (structure mutations)."""
    from harness.config import load_scenario, parse_scenario

    texts = [p.read_text() for p in sorted((ROOT / "harness" / "scenarios").glob("*.toml"))]
    parsed = [tomllib.loads(t) for t in texts]
    path = tmp / "scenario.toml"

    def feed(rng: random.Random) -> bool:
        op = rng.random()
        if op < 0.4:
            path.write_bytes(mutate.mutate_text(rng, rng.choice(texts)).encode("utf-8", "surrogateescape"))
            load_scenario(path)
        elif op < 0.6:
            path.write_text(to_toml(mutate.mutate_structure(rng, rng.choice(parsed))))
            load_scenario(path)
        else:
            parse_scenario(mutate.mutate_structure(rng, rng.choice(parsed)), str(path))
        return True

    return Target("scenario", "scenario TOML (harness.config)", feed, (HarnessError,))


def make_inventories(tmp: Path) -> Target:
    """An inventory file into ``harness.remote.inventory.load`` / ``parse``."""
    from harness.remote import inventory

    (tmp / "id_ed25519").write_text("not a key: never read by load\n")
    parsed = tomllib.loads(INVENTORY)
    path = tmp / "inventory.toml"

    def feed(rng: random.Random) -> bool:
        op = rng.random()
        if op < 0.4:
            path.write_bytes(mutate.mutate_text(rng, INVENTORY).encode("utf-8", "surrogateescape"))
            inventory.load(path)
        elif op < 0.6:
            path.write_text(to_toml(mutate.mutate_structure(rng, parsed)))
            inventory.load(path)
        else:
            inventory.parse(mutate.mutate_structure(rng, parsed), path)
        return True

    return Target("inventory", "inventory TOML (harness.remote.inventory)", feed, (HarnessError,))


# --------------------------------------------------------------------------- stores


def _store_seeds(tmp: Path) -> list[Path]:
    """A current store with real records, older-format ones, a foreign SQLite file."""
    from harness.store.db import Store
    from harness.store.records import Context, Record
    from kist_reference import trace

    seeds = []
    good = tmp / "seed-current.db"
    ctx = Context("fuzz", "A" * 40, "0.4.9.11", "abc", "KIST")
    with Store(good) as store:
        recs = [Record("BW", 60.0 * i, {"read": i, "written": 2 * i}) for i in range(5)]
        for j in _lines(DATA / "real-tor-0.4.9.11-runs.jsonl")[:5]:
            from harness.store.aggregates import run_fields

            r = trace.from_json(j)
            recs.append(Record("KIST_RUN", 61.0, run_fields(r), trace.to_wire(r).split(" ", 1)[1]))
        recs += [Record("KIST_QTIME", 62.0, {"run": 1, "sched": "KIST", "t0_ns": 1, "n": 1, "cells": "5:9:1500:-"}),
                 Record("gap", 63.0, {"start": 1.0, "end": 2.0, "seconds": 1.0, "reason": "fuzz"})]
        store.write_batch((ctx, r) for r in recs)
    seeds.append(good)
    for name, sql in (
            ("no-aggregates", "DROP TABLE agg_counts; DROP TABLE agg_bins; DELETE FROM meta WHERE key='aggregates_version'"),
            ("old-aggregates", "UPDATE meta SET value='0' WHERE key='aggregates_version'"),
            ("schema-0", "UPDATE meta SET value='0' WHERE key='schema_version'"),
            ("no-meta", "DROP TABLE meta")):
        p = tmp / f"seed-{name}.db"
        p.write_bytes(good.read_bytes())
        db = sqlite3.connect(p)
        db.executescript(sql)
        db.close()
        seeds.append(p)
    foreign = tmp / "seed-foreign.db"
    db = sqlite3.connect(foreign)
    db.executescript("CREATE TABLE records (x); INSERT INTO records VALUES (1); "
                     "CREATE TABLE meta (key, value); INSERT INTO meta VALUES ('schema_version', 'one')")
    db.close()
    seeds.append(foreign)
    return seeds


_META_VALUES = ("x", "", "-1", "2", "1.0", "1e9", "99999999999999999999", None)


def make_stores(tmp: Path) -> Target:
    """A store file (old format, foreign, corrupt) opened for reading and for appending, and
    read the way `collect --out` (summary, export) and `report` read it."""
    from harness.store.db import Store
    from harness.store.export import export_runs
    from harness.store.records import Context, Record

    seeds = [p.read_bytes() for p in _store_seeds(tmp)]
    counter = [0]

    def damage(rng: random.Random, path: Path) -> None:
        data = bytearray(rng.choice(seeds))
        op = rng.random()
        if op < 0.35:  # bit flips anywhere, the header and page headers included
            for _ in range(rng.choice((1, 2, 8, 64))):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif op < 0.5:
            del data[rng.randrange(len(data)):]
        path.write_bytes(bytes(data))
        if op >= 0.5:  # valid SQLite with odd contents: meta values, records, tables
            db = sqlite3.connect(path)
            try:
                what = rng.randrange(4)
                if what == 0:
                    db.execute("UPDATE meta SET value=? WHERE key=?",
                               (rng.choice(_META_VALUES), rng.choice(("schema_version", "aggregates_version"))))
                elif what == 1:
                    db.execute("DROP TRIGGER IF EXISTS records_no_update")
                    row = db.execute("SELECT id, data, raw FROM records ORDER BY random() LIMIT 1").fetchone()
                    if row:
                        col = rng.choice(("data", "raw", "kind", "ts"))
                        old = {"data": row[1], "raw": row[2] or "", "kind": "KIST_RUN", "ts": "1"}[col]
                        db.execute(f"UPDATE records SET {col}=? WHERE id=?",  # noqa: S608 - column from a fixed list
                                   (mutate.mutate_text(rng, str(old)).encode("utf-8", "replace").decode(), row[0]))
                elif what == 2:
                    db.execute(f"DROP TABLE IF EXISTS {rng.choice(('contexts', 'agg_bins', 'records'))}")
                else:
                    db.execute("UPDATE contexts SET arm=? ", (rng.choice(("", "\x00", "KIST", "é" * 300)),))
                db.commit()
            except sqlite3.Error:
                pass  # a seed this mutation cannot apply to: it is fed as it is
            finally:
                db.close()

    def feed(rng: random.Random) -> bool:
        counter[0] += 1
        path = tmp / f"store-{counter[0]}.db"  # a fresh file each time: no lock or WAL carried over
        try:
            damage(rng, path)
            return _read_store(path, rng.random() < 0.5)
        finally:
            for side in ("", "-wal", "-shm", "-journal"):
                Path(f"{path}{side}").unlink(missing_ok=True)

    def _read_store(path: Path, readonly: bool) -> bool:
        with Store(path, readonly=readonly) as store:
            store.kinds()
            store.count()
            store.contexts()
            for _ in store.records():
                pass
            store.totals("kist_runs")
            store.histogram("npend")
            store.values("BW", "read")
            export_runs(store, tmp / "export.jsonl")
            if not readonly:
                store.write_batch([(Context("fuzz-append"), Record("BW", 1.0, {"read": 1, "written": 1}))])
        return True

    return Target("store", "store files: older format versions, foreign and corrupt SQLite "
                  "(open, read, export, append)", feed, (HarnessError,))


def all_targets(tmp: Path) -> list[Target]:
    return [make_events(tmp), make_records(tmp), make_scenarios(tmp), make_inventories(tmp), make_stores(tmp)]
