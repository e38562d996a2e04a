"""The on-host switch script, run locally against fake tors (no tor, no Docker, no SSH).

A fake tor daemonises, binds the ControlSocket its torrc names and writes its pid file;
a broken one exits 1. The script must switch atomically and go back on failure.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.remote.switch_script import SCRIPT

FAKE_TOR = f"""#!{sys.executable}
import os, socket, sys, time
args = sys.argv[1:]
pidfile = args[args.index("--PidFile") + 1]
torrc = args[args.index("-f") + 1]
path = [l.split()[1] for l in open(torrc) if l.startswith("ControlSocket")][0]
if os.fork():
    sys.exit(0)
os.setsid()
if os.path.exists(path):
    os.unlink(path)
s = socket.socket(socket.AF_UNIX); s.bind(path); s.listen(1)
open(pidfile, "w").write(str(os.getpid()))
time.sleep(120)
"""


@pytest.fixture
def install(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    d = tmp_path / "kist"
    sock = tmp_path / "control.sock"
    for rel, body in (("good", FAKE_TOR), ("good2", FAKE_TOR), ("broken", "#!/bin/sh\nexit 1\n")):
        (d / "releases" / rel).mkdir(parents=True)
        tor = d / "releases" / rel / "tor"
        tor.write_text(body)
        tor.chmod(0o755)
        (d / "releases" / rel / "torrc").write_text(f"ControlSocket {sock}\n")
        (d / "releases" / rel / "defaults-torrc").write_text("")
    (d / "kist-switch").write_text(SCRIPT)
    pid_file = tmp_path / "tor.pid"
    (d / "host.env").write_text(f"RUN_MODE=process\nUNIT=x\nPID_FILE={pid_file}\nCONTROL_PORT=\n"
                                f"CONTROL_SOCKET={sock}\nWAIT_S=5\n")
    os.symlink("releases/good", d / "current")
    yield d, pid_file
    if pid_file.exists():
        with contextlib.suppress(ValueError, ProcessLookupError):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


def _switch(d: Path, *args: str) -> tuple[int, dict[str, str]]:
    # output to a file, as on the host: the daemonised tor inherits it and never closes a pipe
    with (d / "switch.log").open("w") as log:
        res = subprocess.run(["sh", str(d / "kist-switch"), *args], stdout=log,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=60)
    text = (d / "state").read_text() if (d / "state").exists() else ""
    state = dict(line.split("=", 1) for line in text.splitlines())
    return res.returncode, state


def _running(d: Path, pid_file: Path) -> str:
    pid = int(pid_file.read_text())
    os.kill(pid, 0)
    return os.path.basename(os.readlink(d / "current"))


def test_activate_then_failed_release_goes_back_then_rollback(install: tuple[Path, Path]) -> None:
    d, pid_file = install
    code, state = _switch(d, "activate", "good2")
    assert code == 0 and state == {"phase": "active", "current": "good2", "previous": "good"}
    assert _running(d, pid_file) == "good2"

    code, state = _switch(d, "activate", "broken")
    assert code == 3, (d / "switch.log").read_text()
    assert "going back to good2" in (d / "switch.log").read_text()
    assert state == {"phase": "rolled-back", "current": "good2", "previous": "broken",
                     "failed": "broken"}
    assert _running(d, pid_file) == "good2"

    code, state = _switch(d, "activate", "good")
    code, state = _switch(d, "rollback")
    assert code == 0 and state["phase"] == "rolled-back" and state["current"] == "good2"
    assert _running(d, pid_file) == "good2"
    assert not (d / "lock").exists()


def test_busy_lock_refuses_a_second_switch(install: tuple[Path, Path]) -> None:
    d, _ = install
    (d / "lock").mkdir()
    (d / "lock" / "pid").write_text(str(os.getpid()))   # a live holder: this test process
    code, _ = _switch(d, "activate", "good2")
    assert code == 75 and "busy" in (d / "switch.log").read_text()
    assert os.readlink(d / "current") == "releases/good"
    (d / "lock" / "pid").write_text("999999999")          # a dead holder: the lock is stale
    code, state = _switch(d, "activate", "good2")
    assert code == 0 and state["current"] == "good2"
