"""The store's filesystem fills up under a collector: a real tmpfs, a few MB, mounted here.

Goal: `kist-harness collect` stops with a clear error (one paragraph, no traceback, exit
code 3 from harness.errors), says what it did not store; the store keeps everything
committed before (integrity ok, committed records lost 0) and is readable afterwards.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from harness.faults.collector_kill import _cli, _run_count
from harness.faults.common import Figure, Lab, Ledger, integrity


@contextlib.contextmanager
def tmpfs(size: str) -> Iterator[Path]:
    """A fresh tmpfs of ``size`` on a directory of our own; unmounted and removed after."""
    where = Path(tempfile.mkdtemp(prefix="kist-faults-full-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "kist-faults", str(where)], check=True)
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)
        shutil.rmtree(where, ignore_errors=True)


def run(lab: Lab, size: str = "3m") -> Figure:
    fig = Figure(f"store filesystem full (tmpfs {size})")
    with tmpfs(size) as where:
        store = where / "s.db"
        ledger = Ledger(store)
        run_id = "disk-full"
        proc = _cli(lab, store, run_id)
        start = time.monotonic()
        while proc.poll() is None and time.monotonic() - start < 300:
            ledger.sample()
            time.sleep(0.5)
        if proc.poll() is None:
            proc.terminate()
            fig.problems.append("the store never filled within 300 s")
        out, err = proc.communicate(timeout=60)
        seconds = time.monotonic() - start
        df = shutil.disk_usage(where)
        check = integrity(store)
        lost = ledger.lost()
        stored = _run_count(store, run_id)
    message = [line for line in err.splitlines() if line.startswith("kist-harness collect:")]
    paragraph = err[err.find("kist-harness collect:"):].strip() if message else ""
    fig.values.update(exit=proc.returncode, seconds=f"{seconds:.0f}", stored=stored, committed_lost=lost,
                      integrity=check, free_bytes=df.free, traceback="Traceback" in err,
                      message=repr(paragraph[:700]), one_paragraph="\n\n" not in paragraph)
    if "Traceback" in err or "Exception ignored" in err:
        fig.problems.append("a traceback on stderr: " + err[-600:])
    if proc.returncode != 3:
        fig.problems.append(f"exit code {proc.returncode}, not 3 (a step failed)")
    if not message:
        fig.problems.append(f"no error message: stderr ends {err[-300:]!r}")
    if lost:
        fig.problems.append(f"{lost} committed records lost")
    if check != "ok":
        fig.problems.append(f"integrity_check: {check}")
    return fig
