"""SIGTERM, SIGHUP and SIGINT run the same cleanup as Ctrl-C, in a real child process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness.proc import run

CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from harness.signals import Stopped, exit_code_of, stop_on_signals

    marker = Path(sys.argv[1])
    try:
        with stop_on_signals():
            try:
                marker.with_suffix(".ready").write_text("ready")
                time.sleep(60)
            finally:
                time.sleep(float(sys.argv[2]))          # a slow teardown
                marker.write_text("cleaned up")
    except KeyboardInterrupt as exc:
        print(f"stopped by {exc.name if isinstance(exc, Stopped) else 'KeyboardInterrupt'}", file=sys.stderr)
        sys.exit(exit_code_of(exc))
""")


def _start(tmp_path: Path, teardown_s: float) -> tuple[subprocess.Popen[str], Path]:
    marker = tmp_path / "cleanup"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(marker), str(teardown_s)],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while not marker.with_suffix(".ready").exists():
        assert time.monotonic() < deadline and proc.poll() is None, "child did not start"
        time.sleep(0.02)
    return proc, marker


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_each_signal_runs_the_cleanup_and_exits_128_plus_signum(tmp_path: Path, sig: int) -> None:
    proc, marker = _start(tmp_path, 0.0)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 128 + sig
    assert marker.read_text() == "cleaned up"
    assert f"stopped by {signal.Signals(sig).name}" in err


def test_a_second_signal_does_not_cut_the_cleanup_short(tmp_path: Path) -> None:
    proc, marker = _start(tmp_path, 1.5)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)                  # impatient: `docker stop` then a retry
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 128 + signal.SIGTERM
    assert marker.read_text() == "cleaned up"
    assert "still cleaning up" in err


def _gone(pid: int) -> bool:
    """SIGKILL is delivered asynchronously: give a loaded machine a moment to finish the kill."""
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text() if Path(f"/proc/{pid}/stat").exists() else ""
    return bool(stat) and stat.split(") ")[1][0] != "Z"


def test_a_command_that_times_out_leaves_no_grandchild(tmp_path: Path) -> None:
    """`make -j2` killed alone would orphan its compilers: the whole process group goes."""
    pidfile = tmp_path / "grandchild.pid"
    from harness.errors import CommandFailed

    with pytest.raises(CommandFailed, match="timed out"):
        run(["sh", "-c", f"sleep 300 & echo $! > {pidfile}; wait"], timeout=1.0)
    assert _gone(int(pidfile.read_text()))


def test_a_streamed_command_that_times_out_leaves_no_grandchild(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    from harness.errors import CommandFailed

    lines: list[str] = []
    with pytest.raises(CommandFailed, match="timed out"):
        run(["sh", "-c", f"echo started; sleep 300 & echo $! > {pidfile}; wait"], timeout=1.0,
            on_line=lines.append)
    assert lines == ["started"]
    assert _gone(int(pidfile.read_text()))


def test_worker_threads_are_told_once_and_a_deferred_stretch_finishes() -> None:
    """deploy runs one thread per host: each stops at its next check, after any switch in progress."""
    import threading

    from harness.signals import Stopped, deferred, raise_if_stopped, stop_on_signals

    seen: dict[str, object] = {}
    started, in_switch = threading.Event(), threading.Event()

    def worker() -> None:
        with deferred():               # a switch on the host: must finish once begun
            in_switch.set()
            started.wait(10)
            time.sleep(0.2)
            raise_if_stopped()         # deferred: no stop here
            seen["switch"] = "finished"
        try:
            while True:
                raise_if_stopped()
                time.sleep(0.01)
        except Stopped as exc:
            seen["stopped"] = exc.name
        raise_if_stopped()             # told once: the cleanup after it runs undisturbed
        seen["cleanup"] = "ran"

    with pytest.raises(Stopped), stop_on_signals():
        t = threading.Thread(target=worker)
        t.start()
        in_switch.wait(10)
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)              # the handler raises here, in the main thread
        finally:
            started.set()
            t.join(10)
    assert seen == {"switch": "finished", "stopped": "SIGTERM", "cleanup": "ran"}
