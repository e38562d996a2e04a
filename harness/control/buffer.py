"""The bounded queue between stem's event thread and the store writer.

Events are put without blocking: when the queue is full they are shed and counted, so
a burst or a slow disk costs data (said out loud) instead of unbounded memory or a
stalled control connection. The collector's own records (gaps, snapshots, A/B switches)
are rare and never shed.
"""

from __future__ import annotations

import collections
import threading
from typing import Any


class EventBuffer:
    """A deque with limits on events and on their raw bytes; ``get_batch`` hands the writer
    what is there. Both limits matter: a KIST_RUN line of a busy relay is kilobytes."""

    def __init__(self, max_events: int, max_bytes: int = 1 << 62) -> None:
        if max_events < 1 or max_bytes < 1:
            raise ValueError("max_events and max_bytes must be >= 1")
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._items: collections.deque[tuple[int, Any]] = collections.deque()
        self._events = 0
        self._bytes = 0
        self._cond = threading.Condition(threading.Lock())
        self.shed = 0          # events dropped because the queue was full
        self.accepted = 0      # events queued
        self.high_water = 0    # most events queued at once

    def put_event(self, item: Any, size: int = 0) -> bool:
        """Queue an event of ``size`` raw bytes unless the queue is full; return whether it was kept."""
        with self._cond:
            if self._events >= self.max_events or self._bytes + size > self.max_bytes:
                self.shed += 1
                return False
            self._items.append((size + 1, item))  # +1: 0 marks the collector's own records
            self._events += 1
            self._bytes += size
            self.accepted += 1
            self.high_water = max(self.high_water, self._events)
            self._cond.notify()
            return True

    def put_record(self, item: Any) -> None:
        """Queue one of the collector's own records: never shed."""
        with self._cond:
            self._items.append((0, item))
            self._cond.notify()

    def get_batch(self, max_items: int, timeout: float, max_bytes: int = 1 << 62) -> list[Any]:
        """Up to max_items (and about max_bytes) in arrival order, waiting at most timeout
        for the first; a batch is bounded like the queue, so the writer's copy is too."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            batch: list[Any] = []
            taken = 0
            while self._items and len(batch) < max_items and taken < max_bytes:
                size, item = self._items.popleft()
                if size:
                    self._events -= 1
                    self._bytes -= size - 1
                    taken += size - 1
                batch.append(item)
            return batch

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    @property
    def fill(self) -> float:
        """Fraction of the tighter limit in use (0..1)."""
        return max(self._events / self.max_events, self._bytes / self.max_bytes)
