"""`kist-harness collect` SIGKILLed mid-write, again and again, into one store.

Each round starts the CLI on the same store (a new run id), waits until it has committed
records of its own, kills it at a random moment of writing and checks the store at once.

Goal: ``PRAGMA integrity_check`` = ok after every kill, committed records lost 0, every
restarted collector appends (its records are there), no parse worker left behind, and a
last collector ends cleanly on SIGTERM.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from harness.faults.common import Figure, Lab, Ledger, integrity

log = logging.getLogger(__name__)


def _cli(lab: Lab, store: Path, run_id: str) -> subprocess.Popen[str]:
    node = lab.node
    return subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "collect", "--control", f"{node.control_host}:{node.control_port}",
         "--cookie", str(node.cookie_path), "--out", str(store), "--run-id", run_id, "--events", "KIST_QTIME",
         "--snapshot-every", "1s", "--patch-hash", lab.patch_hash],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _run_count(store: Path, run_id: str) -> int:
    import sqlite3

    try:
        db = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=30)
        try:
            return int(db.execute("SELECT count(*) FROM records r JOIN contexts c ON r.ctx = c.id "
                                  "WHERE c.run_id = ?", (run_id,)).fetchone()[0])
        finally:
            db.close()
    except Exception:  # noqa: BLE001 - not created yet
        return 0


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def run(lab: Lab, kills: int = 10, seed: int = 1) -> Figure:
    fig = Figure(f"collect SIGKILLed mid-write x{kills}")
    rng = random.Random(seed)
    store = lab.work / "collector-kill.db"
    ledger = Ledger(store)
    ok = appended = orphans = 0
    per_round: list[int] = []
    for i in range(kills):
        run_id = f"kill-{i}"
        proc = _cli(lab, store, run_id)
        try:
            deadline = time.monotonic() + 60
            while _run_count(store, run_id) < 20 and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.1)
            time.sleep(rng.uniform(0.0, 1.5))  # somewhere in the writer's cycle of batches
            kids = _children(proc.pid)
            ledger.sample()
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            proc.communicate()
        check = integrity(store)
        ok += check == "ok"
        if check != "ok":
            fig.problems.append(f"round {i}: integrity_check says {check!r}")
        n = _run_count(store, run_id)
        per_round.append(n)
        log.info("round %d: killed after %d records of its own; integrity %s", i, n, check)
        appended += n > 0
        gone_by = time.monotonic() + 10  # a worker notices within 0.5 s of its start (spawn: ~1 s)
        while time.monotonic() < gone_by and any(Path(f"/proc/{k}").exists() for k in kids):
            time.sleep(0.2)
        orphans += sum(Path(f"/proc/{k}").exists() for k in kids)
    # a last collector appends and ends cleanly
    proc = _cli(lab, store, "after-kills")
    deadline = time.monotonic() + 60
    while _run_count(store, "after-kills") < 20 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    from harness.store.db import open_store

    with open_store(store, readonly=True) as s:
        ends = sum(1 for c, _r in s.records("end") if c.run_id == "after-kills")
        sessions = {c.run_id for c, _r in s.records("session")}
    lost = ledger.lost()
    fig.values.update(kills=kills, integrity_ok=f"{ok}/{kills}", committed_lost=lost,
                      restarts_appended=f"{appended}/{kills}", records_per_round=f"{min(per_round)}-{max(per_round)}",
                      orphan_workers=orphans, final_exit=proc.returncode, final_end_record=ends,
                      sessions=len(sessions))
    if lost:
        fig.problems.append(f"{lost} committed records lost")
    if appended != kills:
        fig.problems.append(f"only {appended} of {kills} collectors stored anything")
    if orphans:
        fig.problems.append(f"{orphans} parse workers outlived their collector")
    # a collection stopped by SIGTERM flushes, closes and exits as a stopped process (harness.signals)
    if proc.returncode != 128 + signal.SIGTERM or ends != 1 or "Traceback" in err:
        fig.problems.append(f"the last collector: exit {proc.returncode}, {ends} end records, stderr {err[-300:]!r}")
    return fig
