"""Bounded memory under bursts and a slow store: shed and counted, never unbounded.

The "slow disk" here is a real SQLite store whose writer is throttled (each batch
sleeps before committing): device-mapper (dm-delay) is not available on this machine.
"""

from __future__ import annotations

import time
from pathlib import Path

import stem.response

from harness.control.buffer import EventBuffer
from harness.control.writer import OwnRecord, RawEvent, StoreWriter
from harness.store.db import Store, open_store
from harness.store.records import Context, Kind, Record

CTX = Context("r")


def test_buffer_sheds_events_not_own_records() -> None:
    b = EventBuffer(3)
    assert all(b.put_event(i) for i in range(3))
    assert not b.put_event(99)
    b.put_record("gap")
    assert (b.shed, b.accepted, b.high_water, len(b)) == (1, 3, 3, 4)
    assert b.get_batch(10, 0.0) == [0, 1, 2, "gap"]
    assert b.put_event(4) and b.fill == 1 / 3


def test_buffer_bounds_bytes_too() -> None:
    b = EventBuffer(100, max_bytes=1000)
    assert b.put_event("a", 600) and not b.put_event("b", 600) and b.put_event("c", 400)
    assert b.shed == 1 and b.fill == 1.0
    assert b.get_batch(1, 0.0) == ["a"]
    assert b.put_event("d", 600) and len(b) == 2
    assert b.get_batch(10, 0.0, max_bytes=100) == ["c"]  # at least one, then the byte cap


class SlowStore(Store):
    def write_batch(self, items):  # type: ignore[no-untyped-def]
        items = list(items)
        time.sleep(0.05)
        return super().write_batch(items)


def _msg(i: int) -> stem.response.ControlMessage:
    return stem.response.ControlMessage.from_str(f"650 BW {i} {i}\r\n")


def test_slow_store_sheds_counts_and_stays_bounded(tmp_path: Path) -> None:
    store = SlowStore(tmp_path / "s.db")
    buf = EventBuffer(500)
    writer = StoreWriter(store, buf, batch_max=200, flush_interval=0.01).start()
    msgs = [_msg(i) for i in range(20_000)]
    kept = 0
    for i, m in enumerate(msgs):  # a burst far faster than the store can take
        kept += buf.put_event(RawEvent(CTX, float(i), m))
        assert len(buf) <= 500
    buf.put_record(OwnRecord(CTX, Record(Kind.SHED, 0.0, {"shed_total": buf.shed})))
    writer.stop()
    store.close()
    assert buf.shed > 0 and kept + buf.shed == 20_000
    assert buf.high_water <= 500
    with open_store(tmp_path / "s.db", readonly=True) as s:
        assert s.count("BW") == kept == writer.events
        assert s.count(Kind.SHED) == 1


def test_writer_commits_in_batches_and_drains_on_stop(tmp_path: Path) -> None:
    commits: list[int] = []
    with open_store(tmp_path / "s.db") as store:
        buf = EventBuffer(100_000)
        writer = StoreWriter(store, buf, batch_max=1000, flush_interval=0.05,
                             on_commit=commits.append).start()
        for i in range(5000):
            buf.put_event(RawEvent(CTX, float(i), _msg(i)))
        buf.put_event(RawEvent(CTX, 0.0, stem.response.ControlMessage.from_str("650 BW x y\r\n")))
        writer.stop()
        assert writer.stored == 5001 and writer.errors == 1 and commits[-1] == 5001
        assert 5 <= len(commits) <= 50
        assert store.count(Kind.ERROR) == 1


def test_writer_failure_is_reported_not_silent(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    store.close()  # every write now fails
    buf = EventBuffer(10)
    writer = StoreWriter(store, buf, flush_interval=0.01).start()
    buf.put_event(RawEvent(CTX, 0.0, _msg(1)))
    deadline = time.monotonic() + 5
    while writer.failure is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writer.failure is not None and "store" in str(writer.failure)
    writer.stop(timeout=5)
    assert not writer.alive
