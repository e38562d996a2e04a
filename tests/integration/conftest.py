"""What every integration area shares: running a command and signalling it at a given moment."""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Callable

import pytest

SignalWhen = Callable[..., tuple[subprocess.Popen[str], list[str], bool]]


def _signal_when(argv: list[str], pattern: re.Pattern[str], sig: int, *, env: dict[str, str] | None = None,
                 timeout: float = 300.0) -> tuple[subprocess.Popen[str], list[str], bool]:
    """Run ``argv``; when a stderr line matches ``pattern``, send ``sig``; return (proc, lines, sent).

    The command gets a session of its own, so the signal reaches it alone, as `kill` sends it.
    """
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    lines: list[str] = []
    sent = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if not sent.is_set() and pattern.search(line.rstrip()):
                sent.set()
                proc.send_signal(sig)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(10)
    return proc, lines, sent.is_set()


@pytest.fixture
def signal_when() -> SignalWhen:
    return _signal_when
