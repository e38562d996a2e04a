"""The long-running collector: connect, detect, subscribe, snapshot, switch arms, reconnect.

Threads: stem's reader and event threads (per connection), the store writer, and the
thread calling :meth:`Collector.run`, which owns the connection and everything timed.
stem's event thread only hands each raw 650 message to the bounded buffer (parsing is
the writer's job), so neither stem's queue nor ours can grow without bound.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from harness.control.abtest import Schedule, Slot, Switcher
from harness.control.auth import Credentials, authenticate
from harness.control.buffer import EventBuffer
from harness.control.session import detect, make_controller, subscribe
from harness.control.transport import Transport
from harness.control.writer import OwnRecord, RawEvent, StoreWriter
from harness.errors import HarnessError, StepError
from harness.store.db import Store
from harness.store.records import BW, Context, Kind, Record
from harness.store.typed import Gap, Session

log = logging.getLogger(__name__)

SNAPSHOT_INFO = ("traffic/read", "traffic/written", "uptime")
SNAPSHOT_CONF = ("Schedulers", "KISTSchedRunInterval", "KISTSockBufSizeFactor")


@dataclass(frozen=True)
class CollectConfig:
    """Everything that shapes a collection; logged and stored as the SESSION record."""

    run_id: str
    duration_s: float | None            # None: until stopped
    snapshot_every_s: float = 10.0
    buffer_events: int = 200_000         # events held while the writer catches up ...
    buffer_bytes: int = 32 << 20         # ... and their raw size (Python objects: ~3x)
    batch_max: int = 5000
    flush_every_s: float = 0.5
    backoff_first_s: float = 0.5
    backoff_max_s: float = 30.0
    stall_s: float = 30.0                # no event this long (tor sends BW every second): drop
    parse_workers: int = 0               # processes parsing KIST_RUN payloads (0: writer thread)
    patch_hash: str | None = None        # override what the relay reports
    extra_events: tuple[str, ...] = ()


@dataclass
class Progress:
    """Live counters for the CLI; a copy is handed out each second."""

    elapsed_s: float = 0.0
    connected: bool = False
    events: int = 0            # events received from tor (kept + shed)
    events_per_s: float = 0.0
    stored: int = 0
    errors: int = 0
    gaps: int = 0
    shed: int = 0
    queued: int = 0
    stem_queued: int = 0       # stem's own (unbounded) queue: stays near 0 by design
    arm: str = "-"
    unavailable: dict[str, str] = field(default_factory=dict)
    restore_failed: str = ""


class Collector:
    """One collection from one relay into one store; :meth:`run` blocks until done."""

    def __init__(self, transport: Transport, creds: Credentials, store: Store,
                 config: CollectConfig, *, schedule: Schedule | None = None,
                 writer_factory: Callable[..., StoreWriter] = StoreWriter) -> None:
        self.transport, self.creds, self.config, self.schedule = transport, creds, config, schedule
        self.buffer = EventBuffer(config.buffer_events, config.buffer_bytes)
        self.writer = writer_factory(store, self.buffer, batch_max=config.batch_max,
                                     flush_interval=config.flush_every_s,
                                     parse_workers=config.parse_workers)
        self.switcher = Switcher(schedule.arms) if schedule else None
        self.stop_event = threading.Event()
        self.progress = Progress()
        self._ctx = Context(config.run_id)
        self._controller: Any = None
        self._slot: Slot | None = None
        self._shed_reported = 0
        self._last_event = time.monotonic()
        self._stalled = ""
        self._connecting: tuple[Any, float] | None = None
        self._heartbeat = False

    # -- hand-offs ---------------------------------------------------------------------

    def _sink(self, message: Any) -> None:
        """stem's event thread: O(1), never blocks, never raises."""
        self._last_event = time.monotonic()
        self.buffer.put_event(RawEvent(self._ctx, time.time(), message),
                              len(message.raw_content(get_bytes=True)))

    def _record(self, kind: str, data: dict[str, Any], ts: float | None = None) -> None:
        self._put(Record(kind, time.time() if ts is None else ts, data))

    def _put(self, record: Record) -> None:
        self.buffer.put_record(OwnRecord(self._ctx, record))

    def stop(self) -> None:
        """Ask :meth:`run` to finish (signal handlers call this; it only sets a flag)."""
        self.stop_event.set()

    # -- connection --------------------------------------------------------------------

    def _connect(self) -> None:
        """Connect, authenticate, detect features, subscribe; raise StepError on failure."""
        import stem

        sock = self.transport.connect()
        controller = make_controller(sock, self._sink)
        self._connecting = (controller, time.monotonic())  # the watchdog bounds this too
        try:
            authenticate(controller, self.creds)
            features = detect(controller, self.config.extra_events, self.config.patch_hash)
            self._ctx = replace(self._ctx, fingerprint=features.fingerprint,
                                tor_version=features.version, patch_hash=features.patch_hash,
                                arm=self._slot.arm.name if self._slot else "-")
            if self.schedule and self.switcher:
                original = self.switcher.remember(controller)
                self._record(Kind.ARM, {"original": dict(original)})
                if self._slot is not None:  # a reconnect: tor may have restarted with its torrc
                    self.switcher.apply(controller, self._slot.arm)
            accepted, rejected = subscribe(controller, list(features.wanted))
        except stem.ControllerError as exc:
            controller.close()
            raise StepError(f"control connection to {self.transport.describe()} failed: {exc}") from exc
        except BaseException:
            controller.close()
            raise
        finally:
            self._connecting = None
        unavailable = {**features.unavailable, **rejected}
        self.progress.unavailable = unavailable
        self._record(Kind.FEATURES, {"version": features.version, "fingerprint": features.fingerprint,
                                     "patch_hash": features.patch_hash,
                                     "events_offered": list(features.offered),
                                     "subscribed": accepted, "unavailable": unavailable})
        for name, why in unavailable.items():
            log.info("%s unavailable: %s", name, why)
        self._last_event = time.monotonic()
        self._stalled = ""
        self._heartbeat = BW in accepted  # tor sends BW every second: silence means trouble
        self._controller = controller
        log.info("collecting from %s: tor %s, relay %s, events %s", self.transport.describe(),
                 self._ctx.tor_version, self._ctx.fingerprint, " ".join(accepted))

    def _disconnect(self) -> None:
        if self._controller is not None:
            self._controller._sink = None
            self._controller.close()
            self._controller = None

    def _reconnect(self, deadline: float | None, reason: str) -> bool:
        """Retry with exponential backoff until connected, stopped or past the deadline."""
        gap_start = time.time()
        self.progress.gaps += 1
        self.progress.connected = False
        log.warning("control connection lost (%s); reconnecting with backoff", reason)
        delay = self.config.backoff_first_s
        last_error = reason
        while not self.stop_event.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                break
            try:
                self._connect()
            except HarnessError as exc:
                last_error = str(exc).splitlines()[0]
                log.info("reconnect failed (%s); next try in %.1f s", last_error, delay)
                wait = delay if deadline is None else min(delay, max(0.0, deadline - time.monotonic()))
                self.stop_event.wait(wait)
                delay = min(delay * 2, self.config.backoff_max_s)
                continue
            end = time.time()
            self._put(Gap(gap_start, end, reason).record())
            self.progress.connected = True
            log.info("reconnected after %.1f s", end - gap_start)
            return True
        end = time.time()
        self._put(Gap(gap_start, end, reason, open=True, last_error=last_error).record())
        return False

    def _watchdog(self, done: threading.Event) -> None:
        """Close a connection that went silent (a stopped tor, a dead tunnel): stem would
        wait for ever on a reply, and the main loop with it. Closing wakes both."""
        while not done.wait(1.0):
            connecting = self._connecting
            if connecting is not None and time.monotonic() - connecting[1] > self.config.stall_s:
                log.warning("tor accepted the connection but has not answered for %.0f s; "
                            "closing it", self.config.stall_s)
                connecting[0].close()
            controller = self._controller
            silent = time.monotonic() - self._last_event
            if (controller is not None and self._heartbeat and controller.is_alive()
                    and silent > self.config.stall_s):
                self._stalled = f"no event for {silent:.0f} s (tor stopped or the path is dead)"
                log.warning("closing the control connection: %s", self._stalled)
                controller.close()

    # -- periodic work -----------------------------------------------------------------

    def _snapshot(self) -> None:
        c = self._controller
        info = c.get_info(list(SNAPSHOT_INFO))
        conf = c.get_conf_map(list(SNAPSHOT_CONF))
        params = (c.get_info("consensus/params", "") or "").split()
        kist_params = dict(p.split("=", 1) for p in params
                           if "=" in p and ("KIST" in p or "Sched" in p or p.startswith("Circuit")))
        self._record(Kind.SNAPSHOT, {
            "traffic_read": int(info["traffic/read"]), "traffic_written": int(info["traffic/written"]),
            "uptime": int(info["uptime"]), "conf": {k: ",".join(v) for k, v in conf.items()},
            "consensus_params": kist_params})

    def _switch_arm(self, elapsed: float) -> None:
        assert self.schedule and self.switcher
        slot = self.schedule.slot_at(elapsed)
        if self._slot is not None and slot.arm == self._slot.arm and slot.block == self._slot.block:
            return
        self.switcher.apply(self._controller, slot.arm)
        self._slot = slot
        self._ctx = replace(self._ctx, arm=slot.arm.name)
        self.progress.arm = slot.arm.name
        self._record(Kind.ARM, {"arm": slot.arm.name, "settings": dict(slot.arm.settings),
                                "block": slot.block, "index": slot.index})
        log.info("arm %s (block %d, slot %d)", slot.arm.describe(), slot.block, slot.index)

    def _restore(self) -> None:
        """Put the relay's settings back; on a dead connection, try one fresh one."""
        if not self.switcher or self.switcher.original is None or self._slot is None:
            return
        try:
            if self._controller is None or not self._controller.is_alive():
                self._disconnect()
                self._connect()
            self.switcher.restore(self._controller)
            self._record(Kind.ARM, {"restored": dict(self.switcher.original)})
        except HarnessError as exc:
            settings = " ".join(f"{k}={v}" for k, v in self.switcher.original.items())
            self.progress.restore_failed = f"{exc}; set by hand: SETCONF {settings}"
            log.error("could not restore the relay's settings: %s", self.progress.restore_failed)

    # -- the loop ----------------------------------------------------------------------

    def run(self, on_progress: Callable[[Progress], None] | None = None,
            session: dict[str, Any] | None = None) -> Progress:
        """Collect until the duration ends or :meth:`stop`; return the final counters.

        The first connection must succeed (a wrong address should fail at once); later
        drops are gaps, retried with backoff.
        """
        cfg = self.config
        start = time.monotonic()
        deadline = None if cfg.duration_s is None else start + cfg.duration_s
        self.writer.start()
        watchdog_done = threading.Event()
        watchdog = threading.Thread(target=self._watchdog, args=(watchdog_done,),
                                    name="kist-watchdog", daemon=True)
        try:
            watchdog.start()
            self._put(Session(cfg.run_id, self.transport.describe(), session or {}).record(time.time()))
            log.info("run %s from %s: %s %s", cfg.run_id, self.transport.describe(), cfg, session or "")
            self._connect()
            self.progress.connected = True
            if self.schedule:
                self._switch_arm(0.0)
            next_snapshot = time.monotonic()
            last_tick, last_events = time.monotonic(), 0
            while not self.stop_event.is_set():
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    break
                if self.writer.failure is not None:
                    # stop, and say what is kept and what is not: a full disk must not look like a crash
                    lost = self.writer.unsaved + len(self.buffer) + self.buffer.shed
                    raise StepError(
                        f"the store writer failed: {self.writer.failure}. The {self.writer.stored} records "
                        f"committed before it are kept (each commit is one transaction); {lost} received "
                        "items were not stored. Free space for the store (or give another --out) and collect "
                        "again: a collection appends to an existing store.")
                if not self._controller.is_alive():
                    self._disconnect()
                    reason = self._stalled or "tor closed the control connection"
                    if not self._reconnect(deadline, reason):
                        break
                    continue
                try:
                    if self.schedule:
                        self._switch_arm(now - start)
                    if now >= next_snapshot:
                        self._snapshot()
                        next_snapshot = now + cfg.snapshot_every_s
                except Exception as exc:  # noqa: BLE001 - a dropped connection mid-request
                    if self._controller.is_alive():
                        if isinstance(exc, HarnessError):
                            raise
                        raise StepError(f"control request failed: {exc}") from exc
                    continue  # the top of the loop records the gap
                if now - last_tick >= 1.0:
                    events = self.buffer.accepted + self.buffer.shed
                    self._update_progress(now - start, (events - last_events) / (now - last_tick))
                    last_tick, last_events = now, events
                    if on_progress:
                        on_progress(self.progress)
                self.stop_event.wait(0.1)
        finally:
            watchdog_done.set()
            self._finish(start)
        return self.progress

    def _update_progress(self, elapsed: float, rate: float) -> None:
        p = self.progress
        p.elapsed_s, p.events_per_s = elapsed, rate
        p.events = self.buffer.accepted + self.buffer.shed
        p.stored, p.errors, p.shed = self.writer.stored, self.writer.errors, self.buffer.shed
        p.queued = len(self.buffer)
        controller = self._controller
        p.stem_queued = controller._event_queue.qsize() if controller is not None else 0
        if p.shed > self._shed_reported:
            self._record(Kind.SHED, {"shed_total": p.shed, "new": p.shed - self._shed_reported})
            self._shed_reported = p.shed

    def _finish(self, start: float) -> None:
        """Restore settings, stop stem, drain and commit everything queued."""
        try:
            self._restore()
        finally:
            self._disconnect()
            self._update_progress(time.monotonic() - start, 0.0)
            p = self.progress
            self._record(Kind.END, {"events": p.events, "shed": p.shed, "errors": p.errors,
                                    "gaps": p.gaps, "restore_failed": p.restore_failed})
            self.writer.stop()
            p.stored, p.errors, p.queued = self.writer.stored, self.writer.errors, len(self.buffer)
            self.transport.close()
