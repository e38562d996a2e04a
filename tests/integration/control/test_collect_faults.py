"""Faults with the patch's events (replayed over a real socket): SIGKILL with parse workers."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.control.replayport import ReplaySpec, replay_port
from harness.store.db import open_store

pytestmark = pytest.mark.integration


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_sigkill_mid_stream_keeps_batches_and_leaves_no_workers(tmp_path: Path) -> None:
    from kist_reference import trace
    from kist_reference.recorder import SimRelay

    lines = [f"650 {trace.to_wire(r)}" for r in SimRelay(seed=2, n_channels=4).records(200)]
    store = tmp_path / "s.db"
    with replay_port(ReplaySpec(lines, repeat=1000, rate=1000)) as rp:
        proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "collect", "--control",
                                 f"127.0.0.1:{rp.port}", "--out", str(store), "--duration", "60s",
                                 "--parse-workers", "1"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 30
            seen = 0
            while time.monotonic() < deadline and seen < 1000:
                time.sleep(0.2)
                try:
                    with open_store(store, readonly=True) as s:
                        seen = s.count("KIST_RUN")
                except Exception:  # noqa: BLE001 - not created yet
                    pass
            assert seen >= 1000, "collector did not store KIST_RUN records"
            kids = _children(proc.pid)
            assert kids, "expected a parse worker process"
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stderr.close()  # type: ignore[union-attr]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{k}").exists() for k in kids):
        time.sleep(0.2)
    assert not any(Path(f"/proc/{k}").exists() for k in kids), "orphaned worker processes"
    db = sqlite3.connect(store)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    with open_store(store, readonly=True) as s:
        assert s.count("KIST_RUN") >= seen
        # every stored run is complete: its payload parses
        for _c, rec in s.records("KIST_RUN"):
            assert rec.raw is not None
            trace.parse_wire(rec.raw)
