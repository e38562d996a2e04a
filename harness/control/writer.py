"""The writer thread: drains the bounded buffer, parses events with stem, commits batches.

Parsing happens here rather than on stem's event thread so that stem's own (unbounded)
queue only ever holds what the socket delivered since the last cheap hand-off; the one
bounded queue is ours, and shedding is counted there.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.control.buffer import EventBuffer
from harness.control.events import to_record
from harness.control.records import Context, Kind, Record
from harness.control.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RawEvent:
    """A 650 message as stem's reader built it, not yet parsed."""

    ctx: Context
    arrived: float
    message: Any  # stem.response.ControlMessage


@dataclass(frozen=True)
class OwnRecord:
    """A record the collector made itself (gap, snapshot, switch): stored as is."""

    ctx: Context
    record: Record


class StoreWriter:
    """Runs in its own thread; ``stop()`` drains what is queued, commits and returns."""

    def __init__(self, store: Store, buffer: EventBuffer, *, batch_max: int = 5000,
                 flush_interval: float = 0.5,
                 on_commit: Callable[[int], None] | None = None) -> None:
        self.store = store
        self.buffer = buffer
        self.batch_max = batch_max
        self.flush_interval = flush_interval
        self.on_commit = on_commit
        self.stored = 0
        self.errors = 0        # malformed events stored as ERROR records
        self.events = 0        # events parsed
        self.failure: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="kist-store-writer", daemon=True)
        self._behind_logged = 0.0

    def start(self) -> StoreWriter:
        self._thread.start()
        return self

    def stop(self, timeout: float = 60.0) -> None:
        """Ask the thread to drain and finish; wait up to timeout for it."""
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("store writer still busy after %.0f s; %d items not written",
                        timeout, len(self.buffer))

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _convert(self, item: RawEvent | OwnRecord) -> tuple[Context, Record]:
        if isinstance(item, OwnRecord):
            return item.ctx, item.record
        record = to_record(item.message, item.arrived)
        self.events += 1
        if record.kind == Kind.ERROR:
            self.errors += 1
            if self.errors <= 10 or self.errors % 1000 == 0:
                log.warning("malformed event #%d stored as an error record: %s",
                            self.errors, record.data.get("reason"))
        return item.ctx, record

    def _loop(self) -> None:
        try:
            while True:
                stopping = self._stop.is_set()
                batch = self.buffer.get_batch(self.batch_max, self.flush_interval)
                # collect for up to flush_interval so commits (and their fsyncs) are batched
                deadline = time.monotonic() + self.flush_interval
                while (batch and len(batch) < self.batch_max and not stopping
                       and time.monotonic() < deadline):
                    more = self.buffer.get_batch(self.batch_max - len(batch),
                                                 deadline - time.monotonic())
                    batch.extend(more)
                if batch:
                    self.stored += self.store.write_batch([self._convert(i) for i in batch])
                    if self.on_commit:
                        self.on_commit(self.stored)
                    self._report_lag()
                elif stopping:
                    return
        except BaseException as exc:  # the collector reports it; the thread must not vanish silently
            log.error("store writer stopped: %s", exc)
            self.failure = exc

    def _report_lag(self) -> None:
        now = time.monotonic()
        if self.buffer.fill > 0.5 and now - self._behind_logged > 10:
            self._behind_logged = now
            log.warning("store writing is falling behind: queue %.0f%% full, %d events shed "
                        "so far", 100 * self.buffer.fill, self.buffer.shed)
