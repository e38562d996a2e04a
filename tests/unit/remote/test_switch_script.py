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


def _switch(d: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:
    # output to a file, as on the host: the daemonised tor inherits it and never closes a pipe
    with (d / "switch.log").open("w") as log:
        res = subprocess.run(["sh", str(d / "kist-switch"), *args], stdout=log, env=env,
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
    assert code == 0 and state == {"phase": "active", "current": "good2", "previous": "good",
                                   "prior": "stock"}
    assert _running(d, pid_file) == "good2"

    code, state = _switch(d, "activate", "broken")
    assert code == 3, (d / "switch.log").read_text()
    assert "going back to good2" in (d / "switch.log").read_text()
    # previous is what it was before the attempt: a rollback never returns to "broken"
    assert state == {"phase": "rolled-back", "current": "good2", "previous": "good",
                     "failed": "broken"}
    assert os.readlink(d / "previous") == "releases/good"
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


def test_abandon_goes_back_and_forgets_the_failed_release(install: tuple[Path, Path]) -> None:
    """A release that started but failed verification: previous comes back, and previous
    names again what it named before, so a later rollback does not re-activate it."""
    d, pid_file = install
    _switch(d, "activate", "good2")                      # good -> good2 (previous good)
    code, state = _switch(d, "activate", "good")         # good2 -> good (previous good2)
    assert code == 0 and state["prior"] == "good"
    code, state = _switch(d, "abandon", "good2")         # not current: refused, nothing moves
    assert code == 2 and os.readlink(d / "current") == "releases/good"
    code, state = _switch(d, "abandon", "good")
    assert code == 0, (d / "switch.log").read_text()
    assert {k: state[k] for k in ("phase", "current", "previous", "failed")} == {
        "phase": "rolled-back", "current": "good2", "previous": "good", "failed": "good"}
    assert _running(d, pid_file) == "good2"


def test_recover_restores_current_and_previous(install: tuple[Path, Path]) -> None:
    """A host that died between the relinks and the restart goes back to both old links."""
    d, pid_file = install
    _switch(d, "activate", "good2")
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    for name, target in (("current", "broken"), ("previous", "good2")):
        (d / name).unlink()
        os.symlink(f"releases/{target}", d / name)
    (d / "state").write_text("phase=switching\nfrom=good2\nto=broken\nkeep=good\n")
    code, state = _switch(d, "recover")
    assert code == 0 and state == {"phase": "rolled-back", "current": "good2", "previous": "good"}
    assert os.readlink(d / "previous") == "releases/good"
    assert _running(d, pid_file) == "good2"


# systemctl as kist-switch uses it: the unit runs the drop-in's ExecStart if there is one,
# else the packaged command; `start` returns once the daemon runs (as Type=notify does)
FAKE_SYSTEMCTL = r"""#!/bin/sh
echo "$*" >> "$FAKE_DIR/calls"
pidf="$FAKE_DIR/tor.pid"
case "$1" in
  daemon-reload) ;;
  stop) [ -f "$pidf" ] && kill "$(cat "$pidf")" 2>/dev/null; rm -f "$pidf" ;;
  start) cmd=$(sed -n 's/^ExecStart=\(..*\)$/\1/p' "$FAKE_DIR/units/$2.service.d/kist-harness.conf" \
               2>/dev/null | tail -n 1)
         [ -n "$cmd" ] || cmd=$(cat "$FAKE_DIR/packaged")
         $cmd --PidFile "$pidf"
         i=0; while [ ! -s "$pidf" ] && [ $i -lt 50 ]; do i=$((i + 1)); sleep 0.1; done ;;
  is-active) [ -s "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null ;;
esac
"""


def test_systemd_drop_in_runs_the_release_and_stock_is_the_packaged_unit(
        install: tuple[Path, Path], tmp_path: Path) -> None:
    d, pid_file = install
    stock = d / "releases" / "stock"
    stock.mkdir()
    (stock / "tor").write_text(FAKE_TOR)
    (stock / "tor").chmod(0o755)
    (stock / "torrc").write_text((d / "releases" / "good" / "torrc").read_text())
    (d / "current").unlink()
    os.symlink("releases/stock", d / "current")
    (d / "host.env").write_text((d / "host.env").read_text().replace("RUN_MODE=process", "RUN_MODE=systemd")
                                .replace("UNIT=x", "UNIT=tor@default") + f"SYSTEMD_DIR={tmp_path}/units\n")
    (tmp_path / "packaged").write_text(f"{stock}/tor -f {stock}/torrc")
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "systemctl").write_text(FAKE_SYSTEMCTL)
    (fake_bin / "systemctl").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake_bin}:{os.environ['PATH']}", "FAKE_DIR": str(tmp_path)}
    dropin = tmp_path / "units" / "tor@default.service.d" / "kist-harness.conf"

    code, state = _switch(d, "activate", "good2", env=env)
    assert code == 0, (d / "switch.log").read_text()
    assert state["current"] == "good2" and state["previous"] == "stock"
    text = dropin.read_text()
    assert text.startswith("[Service]\nExecStart=\n") and f"ExecStart={d}/current/tor --defaults-torrc" in text
    assert _running(d, pid_file) == "good2"

    code, state = _switch(d, "rollback", env=env)
    assert code == 0 and state["current"] == "stock"
    assert not dropin.exists(), "back on stock, the unit runs as packaged"
    assert f"{stock}/tor" in Path(f"/proc/{pid_file.read_text()}/cmdline").read_text()
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls.count("daemon-reload") == 2 and calls.count("start tor@default") == 2
