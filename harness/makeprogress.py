"""Progress of Tor's ``make``: objects built of the total, elapsed, and an estimate of the rest.

Tor's build uses automake's silent rules, so make prints one ``  CC  src/x.o`` (or ``AR``,
``CCLD``) line per target it builds. ``make -n`` lists the same echo lines without running
anything (0.3 s on Tor's tree), so the number of distinct targets in it is the total to
expect: on Tor 0.4.9.11 with unit tests, 1,090 for ``make all src/test/test``, which is
exactly what a full build prints. The estimate assumes the remaining targets take as
long on average as those built so far.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

_BUILT = re.compile(r"^\s+(?:CC|AR|CCLD)\s+(\S+)\s*$")
_PLANNED = re.compile(r'echo "\s+(?:CC|AR|CCLD)\s*" (\S+?);')


def planned_targets(dry_run_output: str) -> int:
    """Distinct targets a ``make -n`` listing says would be built."""
    return len(set(_PLANNED.findall(dry_run_output)))


@dataclass
class MakeProgress:
    """Feed it make's output lines; it calls ``report`` with a summary every ``every_s``."""

    total: int
    report: Callable[[str], None]
    every_s: float = 15.0
    built: set[str] = field(default_factory=set)
    _t0: float = field(default_factory=time.monotonic)
    _last: float = field(default_factory=time.monotonic)

    def line(self, text: str) -> None:
        m = _BUILT.match(text)
        if not m:
            return
        self.built.add(m.group(1))
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self.report(self.describe(now))

    def describe(self, now: float | None = None) -> str:
        elapsed = (now or time.monotonic()) - self._t0
        done = len(self.built)
        if not self.total:
            return f"{done} objects built, {elapsed:.0f} s"
        shown = min(done, self.total)
        left = elapsed / done * max(self.total - done, 0) if done else None
        eta = f", about {left:.0f} s left" if left is not None else ""
        return f"{shown}/{self.total} objects ({100 * shown / self.total:.0f} %), {elapsed:.0f} s{eta}"
