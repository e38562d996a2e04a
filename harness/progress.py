"""Step-by-step progress for long jobs: what is running, for how long, and what failed.

A job is a sequence of named steps; each step's wall time is kept for the final split
("build 4.1 s, network 21.7 s, ..."), and a failure is re-raised naming the step it
happened in, so `kist-harness run` can say "step 3/7 (traffic) failed: ...".
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TextIO

from harness.errors import HarnessError, StepError
from harness.signals import Stopped


@dataclass
class Steps:
    """Prints ``[i/n] name: message`` lines to a stream; keeps per-step durations."""

    names: tuple[str, ...]
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    durations: dict[str, float] = field(default_factory=dict)
    current: str | None = None
    _t0: float = field(default_factory=time.monotonic)

    def say(self, message: str) -> None:
        prefix = f"[{self.index}/{len(self.names)} {self.current}]" if self.current else "[kist-harness]"
        print(f"{prefix} {message}", file=self.stream, flush=True)

    @property
    def index(self) -> int:
        return self.names.index(self.current) + 1 if self.current in self.names else 0

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[Steps]:
        if name not in self.names:
            raise ValueError(f"unknown step {name!r}")
        self.current = name
        start = time.monotonic()
        try:
            # inside the try: a signal that lands while "started" is printed belongs to this step
            self.say("started")
            yield self
        except HarnessError as exc:
            self.durations[name] = time.monotonic() - start
            exc.args = (f"step {self.index}/{len(self.names)} ({name}) failed: {exc}",)
            raise
        except (KeyboardInterrupt, SystemExit) as exc:
            self.durations[name] = time.monotonic() - start
            if isinstance(exc, Stopped) and exc.step is None:
                exc.step = f"{self.index}/{len(self.names)} ({name})"
            raise
        except Exception as exc:
            self.durations[name] = time.monotonic() - start
            raise StepError(f"step {self.index}/{len(self.names)} ({name}) failed: "
                            f"{type(exc).__name__}: {exc}") from exc
        self.durations[name] = time.monotonic() - start
        self.say(f"done in {self.durations[name]:.1f} s")
        self.current = None

    def split(self) -> str:
        total = time.monotonic() - self._t0
        parts = ", ".join(f"{n} {self.durations[n]:.1f} s" for n in self.names if n in self.durations)
        return f"total {total:.1f} s ({parts})"
