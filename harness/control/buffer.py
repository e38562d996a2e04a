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
    """A deque with a limit on events; ``get_batch`` hands the writer what is there."""

    def __init__(self, max_events: int) -> None:
        if max_events < 1:
            raise ValueError("max_events must be >= 1")
        self.max_events = max_events
        self._items: collections.deque[tuple[bool, Any]] = collections.deque()
        self._events = 0
        self._cond = threading.Condition(threading.Lock())
        self.shed = 0          # events dropped because the queue was full
        self.accepted = 0      # events queued
        self.high_water = 0    # most events queued at once

    def put_event(self, item: Any) -> bool:
        """Queue an event unless the queue is full; return whether it was kept."""
        with self._cond:
            if self._events >= self.max_events:
                self.shed += 1
                return False
            self._items.append((True, item))
            self._events += 1
            self.accepted += 1
            self.high_water = max(self.high_water, self._events)
            self._cond.notify()
            return True

    def put_record(self, item: Any) -> None:
        """Queue one of the collector's own records: never shed."""
        with self._cond:
            self._items.append((False, item))
            self._cond.notify()

    def get_batch(self, max_items: int, timeout: float) -> list[Any]:
        """Up to max_items in arrival order, waiting at most timeout for the first."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            batch = []
            while self._items and len(batch) < max_items:
                is_event, item = self._items.popleft()
                self._events -= is_event
                batch.append(item)
            return batch

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    @property
    def fill(self) -> float:
        """Fraction of the event limit in use (0..1)."""
        return self._events / self.max_events
