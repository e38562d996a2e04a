"""SIGTERM, SIGHUP and SIGINT all stop a command the way Ctrl-C does: through its cleanup.

`timeout`, systemd, CI runners and `docker stop` send SIGTERM; a closed terminal sends
SIGHUP. Python's default for both is to die on the spot, skipping every ``finally`` and
context manager, so containers, tor processes and temp dirs of a running network would
be left behind. Here each of the three raises :class:`Stopped` in the main thread instead.
It is a ``KeyboardInterrupt``, so every cleanup path written for Ctrl-C runs unchanged, and
the CLI turns it into one line and exit status 128 + the signal's number (130 for SIGINT,
143 for SIGTERM, 129 for SIGHUP), as a shell reports a process killed by that signal.

A second signal while the cleanup runs does not interrupt it (a half-done teardown is
what this module exists to prevent); it only says so. SIGKILL still ends everything.

Python delivers signals to the main thread only. Work running in other threads (one per
host in ``deploy``) calls :func:`raise_if_stopped` where it waits, so it stops too, and
through its own cleanup: each thread is told once, and its cleanup then runs undisturbed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stopped(KeyboardInterrupt):
    """The command was asked to stop by a signal; ``step`` is where it was (if known)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.step: str | None = None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


_stop = threading.Event()
_stop_signum = [0]
_told = threading.local()  # per thread: already raised Stopped once


def raise_if_stopped() -> None:
    """In a worker thread: raise Stopped the first time this thread looks after a signal."""
    if _stop.is_set() and not getattr(_told, "done", False) and not getattr(_told, "deferred", 0):
        _told.done = True
        raise Stopped(_stop_signum[0])


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """A stretch a worker must finish once begun (a switch on a host): stop checks wait for its end."""
    _told.deferred = getattr(_told, "deferred", 0) + 1
    try:
        yield
    finally:
        _told.deferred -= 1


class Held:
    """What ``held()`` caught: the Stopped to raise once the held stretch is safely over."""

    def __init__(self) -> None:
        self.stopping: Stopped | None = None


_held: list[Held] = []  # main thread only: the innermost held() stretch, if any


@contextlib.contextmanager
def held() -> Iterator[Held]:
    """A stretch of the main thread in which a signal is recorded, not raised.

    For the instant between fork and ``Popen`` returning: a Stopped raised there leaves a
    child running that nobody holds a handle to (CI saw configure keep writing into a build
    directory being removed). The caller checks ``.stopping`` afterwards, cleans up what it
    now can reach, and raises it. Outside the main thread this holds nothing (signals are
    only ever raised in the main thread).
    """
    hold = Held()
    if threading.current_thread() is not threading.main_thread():
        yield hold
        return
    _held.append(hold)
    try:
        yield hold
    finally:
        _held.remove(hold)


class _Handler:
    def __init__(self) -> None:
        self.stopping: Stopped | None = None

    def __call__(self, signum: int, _frame: object) -> None:
        if self.stopping is not None:
            # os.write: print() from inside a signal handler can hit a reentrant stdio call
            os.write(sys.stderr.fileno(), f"kist-harness: {signal.Signals(signum).name} received; still "
                     "cleaning up after the first one (SIGKILL abandons the cleanup)\n".encode())
            return
        self.stopping = Stopped(signum)
        _stop_signum[0] = signum
        _told.done = True  # the main thread is told by this very exception
        _stop.set()
        if _held:
            _held[-1].stopping = self.stopping
            return
        raise self.stopping


@contextlib.contextmanager
def stop_on_signals() -> Iterator[_Handler]:
    """Install the handlers for the duration of one command (main thread only)."""
    handler = _Handler()
    previous = {s: signal.signal(s, handler) for s in HANDLED}
    try:
        yield handler
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        _stop.clear()  # in-process callers (tests) may run another command afterwards
        _told.done = False


def exit_code_of(exc: BaseException) -> int:
    """130 for a plain KeyboardInterrupt (Ctrl-C that reached Python before the handler)."""
    return exc.exit_code if isinstance(exc, Stopped) else 128 + signal.SIGINT
