"""Ctrl-C on `kist-harness collect --fleet`: every relay's session ends in the store, exit 130,
and no shard process is left (the CLI runs in its own process group, checked afterwards)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from harness.control.bench import _lines
from harness.control.replayport import ReplaySpec, replay_port
from harness.errors import InputError
from harness.store.db import open_store
from harness.store.records import KIST_RUN, Kind


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _ended(store: Path) -> int:
    if not store.exists():
        return 0
    try:
        with open_store(store, readonly=True) as s:
            return len({c.run_id for c, _r in s.records(Kind.FEATURES)})
    except InputError:  # the file exists a moment before its first transaction creates the tables
        return 0


def test_sigint_stops_every_relay_cleanly(tmp_path: Path) -> None:
    with contextlib.ExitStack() as stack:
        ports = [stack.enter_context(replay_port(ReplaySpec(_lines("small", 100), repeat=10**4, rate=200)))
                 for _ in range(4)]
        (tmp_path / "fleet.toml").write_text("".join(f'[relays.r{i}]\ncontrol = "127.0.0.1:{p.port}"\n'
                                                     for i, p in enumerate(ports)))
        store = tmp_path / "f.db"
        proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "collect", "--fleet",
                                 str(tmp_path / "fleet.toml"), "--out", str(store), "--run-id", "stop",
                                 "--processes", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while _ended(store) < 4 and time.monotonic() < deadline:
                time.sleep(0.3)
            time.sleep(1)
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=90)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    assert proc.returncode == 128 + signal.SIGINT, err[-2000:]
    assert "stopped by SIGINT" in err and "Traceback" not in err
    left = []
    for _ in range(50):  # multiprocessing's resource tracker exits when it sees the parent gone
        left = [p for p in os.listdir("/proc") if p.isdigit() and _pgid(int(p)) == proc.pid]
        if not left:
            break
        time.sleep(0.1)
    assert not left, [Path(f"/proc/{p}/cmdline").read_bytes()[:200] for p in left]
    with open_store(store, readonly=True) as s:
        ends = {c.run_id for c, _r in s.records(Kind.END)}
        runs = {c.run_id for c, _r in s.records(KIST_RUN)}
    assert ends == runs == {f"stop/r{i}" for i in range(4)}
    assert "4 relays" in out
