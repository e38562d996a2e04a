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
from harness.control.events import kist_run_payload, to_record
from harness.store.aggregates import summarize_payloads
from harness.store.db import Store
from harness.store.records import KIST_RUN, Context, Kind, Record, error_record

log = logging.getLogger(__name__)

BATCH_BYTES = 4 << 20  # raw event bytes per commit: bounds the writer's own copy
COLLECT_NAP_S = 0.02   # while a batch fills: the buffer absorbs 20 ms of any burst it can hold


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


def _worker_init(parent: int) -> None:
    """In each parse worker: leave Ctrl-C to the collector, and exit when it is gone.

    A collector killed with SIGKILL cannot shut its pool down; without the watch, the
    workers would wait on their queue for ever. The collector's pid is passed in rather
    than read here: a collector killed while the worker was still starting (spawn takes a
    second) has already been replaced as the parent, and the worker would watch init.
    """
    import os
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if os.getppid() != parent:
        os._exit(0)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


class StoreWriter:
    """Runs in its own thread; ``stop()`` drains what is queued, commits and returns.

    KIST_RUN payloads are parsed by ``kist_reference.trace`` (not through stem's event
    classes: the payload is all there is); with ``parse_workers`` > 0 in that many worker
    processes (the parser is the pipeline's bottleneck and the GIL keeps a thread from
    using a second core). Other events are parsed here by stem.
    """

    def __init__(self, store: Store, buffer: EventBuffer, *, batch_max: int = 5000,
                 flush_interval: float = 0.5, parse_workers: int = 0,
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
        self.unsaved = 0       # items of the batch being committed (not stored if it fails)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="kist-store-writer", daemon=True)
        self._behind_logged = 0.0
        self.parse_workers = parse_workers
        self._pool: Any = None

    def start(self) -> StoreWriter:
        if self.parse_workers > 0:
            import concurrent.futures
            import multiprocessing
            import os

            # spawn, not fork: forking a process with stem's threads running is unsafe
            self._pool = concurrent.futures.ProcessPoolExecutor(
                self.parse_workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_init, initargs=(os.getpid(),))
        self._thread.start()
        return self

    def stop(self, timeout: float = 60.0) -> None:
        """Ask the thread to drain and finish; wait up to timeout for it."""
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("store writer still busy after %.0f s; %d items not written",
                        timeout, len(self.buffer))
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _counted(self, record: Record) -> Record:
        self.events += 1
        if record.kind == Kind.ERROR:
            self.errors += 1
            if self.errors <= 10 or self.errors % 1000 == 0:
                log.warning("malformed event #%d stored as an error record: %s",
                            self.errors, record.data.get("reason"))
        return record

    def _convert(self, batch: list[RawEvent | OwnRecord]) -> list[tuple[Context, Record]]:
        out: list[tuple[Context, Record] | None] = []
        runs: list[tuple[int, RawEvent, str]] = []  # KIST_RUNs: parsed together, below
        for item in batch:
            if isinstance(item, OwnRecord):
                out.append((item.ctx, item.record))
                continue
            payload = kist_run_payload(item.message)
            if payload is not None:
                runs.append((len(out), item, payload))
                out.append(None)
            else:
                out.append((item.ctx, self._counted(to_record(item.message, item.arrived))))
        if runs:
            # KIST_RUN skips stem's event parsing: the payload goes straight to
            # kist_reference.trace (the pipeline's bottleneck), here or in the workers
            payloads = [p for _i, _e, p in runs]
            if self._pool is None:
                results = summarize_payloads(payloads)
            else:
                per = -(-len(runs) // self.parse_workers)
                chunks = [payloads[k:k + per] for k in range(0, len(runs), per)]
                results = [r for chunk in self._pool.map(summarize_payloads, chunks) for r in chunk]
            for (index, event, payload), result in zip(runs, results, strict=True):
                record = (Record(KIST_RUN, event.arrived, result, payload)
                          if isinstance(result, dict) else
                          error_record(event.arrived, f"KIST_RUN {payload}", result[:300]))
                out[index] = (event.ctx, self._counted(record))
        return [o for o in out if o is not None]

    def _loop(self) -> None:
        try:
            while True:
                stopping = self._stop.is_set()
                batch = self.buffer.get_batch(self.batch_max, self.flush_interval, BATCH_BYTES)
                # collect for up to flush_interval so commits (and their fsyncs) are batched;
                # in naps, not event by event: every wake-up per event would cost the
                # threads that read the socket a GIL hand-off
                deadline = time.monotonic() + self.flush_interval
                while batch and len(batch) < self.batch_max and not stopping:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    stopping = self._stop.wait(min(left, COLLECT_NAP_S))
                    batch.extend(self.buffer.get_batch(self.batch_max - len(batch), 0, BATCH_BYTES))
                if batch:
                    self.unsaved = len(batch)  # what a failing commit leaves unstored
                    self.stored += self.store.write_batch(self._convert(batch))
                    self.unsaved = 0
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
