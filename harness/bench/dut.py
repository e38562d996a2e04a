"""The relay under test of the overhead benchmark: one tor process whose binary is swapped.

Between repetitions the benchmark stops the relay and starts it again from another
binary with the same command line, torrc, data directory and keys, so every arm runs
as the same relay, at the same address, in the same network. The process is tracked by
pid and ended by pid (SIGTERM, then SIGKILL after a bounded wait), and its CPU time is
read from ``/proc``: ``schedstat`` of every thread (nanoseconds on CPU) and
``utime + stime`` of ``stat`` (clock ticks) as a cross-check.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from harness.errors import StepError

STOP_WAIT_S = 10.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuTime:
    """CPU the process has used so far (all threads)."""

    sched_ns: int   # sum of /proc/PID/task/*/schedstat field 1
    ticks: int      # utime + stime of /proc/PID/stat

    def __sub__(self, other: CpuTime) -> CpuTime:
        return CpuTime(self.sched_ns - other.sched_ns, self.ticks - other.ticks)

    @property
    def seconds(self) -> float:
        return self.sched_ns / 1e9

    @property
    def tick_seconds(self) -> float:
        return self.ticks / CLK_TCK


def _alive(pid: int) -> bool:
    """True while pid exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def cpu_time(pid: int) -> CpuTime:
    """CPU used by every thread of pid; StepError if the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(stat[11]) + int(stat[12])  # fields 14 and 15: utime, stime
        ns = 0
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):  # a thread that just exited
                ns += int((task / "schedstat").read_text().split()[0])
    except (OSError, IndexError, ValueError) as exc:
        raise StepError(f"cannot read the CPU time of pid {pid} from /proc ({exc}); did it exit?") from exc
    return CpuTime(ns, ticks)


class Relay:
    """The relay under test: started from a node the network backend launched."""

    def __init__(self, pid: int, log_path: Path) -> None:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
            self.cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
        except OSError as exc:
            raise StepError(f"relay under test (pid {pid}) is not running ({exc.strerror})") from exc
        if len(argv) < 3 or argv[1] != b"-f":
            raise StepError(f"relay under test (pid {pid}) was not started as `tor -f TORRC`: {argv!r}")
        self.args = [a.decode() for a in argv[1:]]  # everything but the binary
        self.log_path = log_path
        self.pid = pid
        self._proc: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        """SIGTERM, bounded wait, SIGKILL; reap it if it is our child."""
        pid, self.pid = self.pid, 0
        if not pid:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT_S
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self._proc is not None:
            self._proc.wait(timeout=STOP_WAIT_S)
            self._proc = None

    def start(self, binary: Path) -> int:
        """Start ``binary`` with the relay's own arguments; return the new pid."""
        if self.pid:
            raise StepError(f"relay under test still running (pid {self.pid}); stop it first")
        with (self.cwd / "stdout.log").open("ab") as out:
            self._proc = subprocess.Popen([str(binary), *self.args], stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=subprocess.STDOUT, cwd=self.cwd, start_new_session=True)
        self.pid = self._proc.pid
        return self.pid

    def alive(self) -> bool:
        return bool(self.pid) and _alive(self.pid)

    def log_tail(self, lines: int = 10) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError as exc:
            return f"  (no log: {exc.strerror})"
        return "\n".join(f"  {line}" for line in text[-lines:])
