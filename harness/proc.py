"""Running local commands: every call returns a Result, a failure shows command and output tail."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import signals
from harness.errors import CommandFailed

log = logging.getLogger(__name__)

TAIL_LINES = 30


@dataclass(frozen=True)
class Result:
    """What one command did: enough to report a failure without re-running it."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def tail(self, lines: int = TAIL_LINES) -> str:
        text = (self.stdout + ("\n" if self.stdout and self.stderr else "") + self.stderr).rstrip()
        return "\n".join(text.splitlines()[-lines:])


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    input_text: str | None = None,
    on_line: Callable[[str], None] | None = None,
) -> Result:
    """Run a command to completion, capturing output; raise CommandFailed when check and it fails.

    The command runs in a process group of its own, and any exception while it runs
    (a timeout, Ctrl-C, a SIGTERM turned into one by harness.signals) kills that whole
    group before it propagates: ``make -j2`` leaves no compiler behind, apt no dpkg.
    With ``on_line``, stdout and stderr are merged and each line is handed to it as it
    comes (long steps report progress); the Result then holds the merged text as stdout.
    """
    start = time.monotonic()
    log.debug("run: %s", " ".join(argv))
    try:  # spawn: a signal during fork/exec kills the child's group before it is raised
        proc = spawn(list(argv), cwd=cwd, env=None if env is None else dict(env), text=True, errors="replace",
                     stdin=subprocess.PIPE if input_text is not None else subprocess.DEVNULL,
                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT if on_line else subprocess.PIPE,
                     start_new_session=True)
    except FileNotFoundError as exc:
        raise CommandFailed(list(argv), 127, f"{argv[0]}: not found on PATH") from exc
    try:
        if on_line is None:
            stdout, stderr = proc.communicate(input_text, timeout=timeout)
        else:
            stdout, stderr = _stream(proc, on_line, timeout), ""
    except subprocess.TimeoutExpired as exc:
        _kill_group(proc)
        out = exc.output.decode(errors="replace") if isinstance(exc.output, bytes) else (exc.output or "")
        raise CommandFailed(list(argv), -1, f"timed out after {timeout} s\n{out[-2000:]}") from exc
    except BaseException:
        _kill_group(proc)
        raise
    result = Result(tuple(argv), proc.returncode, stdout, stderr, time.monotonic() - start)
    if check and not result.ok:
        raise CommandFailed(list(argv), result.returncode, result.tail())
    return result


def spawn(argv: Sequence[str], **popen: Any) -> subprocess.Popen[Any]:
    """``subprocess.Popen`` for a long-running child the caller tracks (tor, a delay line).

    A stop signal landing while Popen forks is held until the child exists; the child is then
    killed (its whole group when ``start_new_session``) and the Stopped raised, so no process
    is left that the caller never got a handle to.
    """
    with signals.held() as hold:
        try:
            child = subprocess.Popen(list(argv), **popen)
        except OSError as exc:
            if hold.stopping is not None:  # the stop wins over a command that was not found
                raise hold.stopping from exc
            raise
    if hold.stopping is not None:
        if popen.get("start_new_session"):
            _kill_group(child)
        else:
            with contextlib.suppress(Exception):
                child.kill()
                child.wait(timeout=10)
        raise hold.stopping
    return child


def _stream(proc: subprocess.Popen[str], on_line: Callable[[str], None], timeout: float | None) -> str:
    """Read merged output line by line until EOF; the deadline is checked between lines."""
    assert proc.stdout is not None
    deadline = None if timeout is None else time.monotonic() + timeout
    lines: list[str] = []
    timer = None
    if deadline is not None:  # a silent command still times out: the timer kills its group
        timer = threading.Timer(timeout or 0.0, _kill_group, (proc,))
        timer.daemon = True
        timer.start()
    try:
        for line in proc.stdout:
            lines.append(line)
            on_line(line.rstrip("\n"))
        proc.wait()
    finally:
        if timer is not None:
            timer.cancel()
    if deadline is not None and time.monotonic() >= deadline and proc.returncode != 0:
        raise subprocess.TimeoutExpired(proc.args, timeout or 0.0, output="".join(lines[-50:]))
    return "".join(lines)


GROUP_GONE_TIMEOUT_S = 10.0


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the command's whole process group, reap the command, and wait until no member is left.

    Reaping the leader is not enough: configure's subshells or make's compilers may still be
    exiting (or, orphaned, waiting for init to reap them) when the caller removes the
    directory they write to, and ``rmtree`` then fails with "Directory not empty" (seen in
    CI: a SIGTERM during configure became an OSError instead of a clean stop).
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        proc.kill()
    with contextlib.suppress(Exception):
        proc.wait(timeout=10)
    wait_group_gone(proc.pid)


def wait_group_gone(pgid: int, timeout: float = GROUP_GONE_TIMEOUT_S) -> bool:
    """Poll until process group ``pgid`` has no member (zombies included); False on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        time.sleep(0.02)
    log.warning("process group %d still has members %.0f s after SIGKILL", pgid, timeout)
    return False
