"""`kist-harness run` stopped by SIGINT, SIGTERM or SIGHUP in each of its steps cleans up.

Each case starts the real main job (local backend: real tor processes on 127.0.0.x), waits
for the step to start, sends the signal, and then asserts what the issue asks: exit status
128 + signum, one line naming the signal and the step, no tor process or run directory of
that network left, no temporary build tree left, and a store that passes SQLite's
integrity check. The build case uses a cache of its own (the Debian source copied in, so
nothing is downloaded) so that a real configure is running when the signal lands.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]
# step name -> the progress line after which the signal is sent
STEP_STARTED = {
    "build": re.compile(r"\[1/7 build\] configure: start"),
    "network": re.compile(r"\[2/7 network\] .*nodes bootstrapped"),
    "traffic": re.compile(r"\[3/7 traffic\] phase base"),
    "replay": re.compile(r"\[4/7 replay\] started"),
    "report": re.compile(r"\[7/7 report\] started"),
}
_RUN_DIR = re.compile(r"network \S+: run \S+ in (\S+) \(backend")


def _cli() -> str:
    venv = Path(sys.executable).parent / "kist-harness"
    return str(venv) if venv.exists() else "kist-harness"


def _tor() -> Path:
    from harness import build

    return build.ensure_built(patches_dir=build.default_patches_dir()).tor


def _procs_naming(text: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmd and int(entry.name) != os.getpid():
                pids.append(int(entry.name))
    return pids


def _gone(text: str, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := _procs_naming(text)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def _cache_with_source(tmp: Path) -> Path:
    """An empty build cache holding only the Debian source, so a real build starts at once."""
    from harness import build

    real = build.default_cache_dir() / "sources"
    cache = tmp / "xdg-cache"
    shutil.copytree(real, cache / "kist-harness" / "sources")
    return cache


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: signal.Signals(s).name)
@pytest.mark.parametrize("step", list(STEP_STARTED))
def test_run_stopped_in_each_step_cleans_up(tmp_path: Path, step: str, sig: int, signal_when: Any) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    out = tmp_path / "out"
    argv = [_cli(), "run", "--backend", "local", "--out", str(out), "--duration", "20", "--period", "10"]
    if step == "build":
        env["XDG_CACHE_HOME"] = str(_cache_with_source(tmp_path))
    else:
        argv += ["--tor", str(_tor())]
    proc, lines, sent = signal_when(argv, STEP_STARTED[step], sig, env=env)
    err = "".join(lines)
    assert sent, f"the step never started:\n{err[-3000:]}"
    assert proc.returncode == 128 + sig, err[-3000:]
    number = {"build": 1, "network": 2, "traffic": 3, "replay": 4, "report": 7}[step]
    last = [ln for ln in lines if ln.startswith("kist-harness run:")]
    assert len(last) == 1 and f"interrupted by {signal.Signals(sig).name}" in last[0], err[-2000:]
    assert f"step {number}/7" in last[0], last[0]
    assert "Traceback" not in err

    run_dirs = _RUN_DIR.findall(err)
    for run_dir in run_dirs:  # the network's tor processes and its run directory are gone
        assert _gone(run_dir) == [], f"processes of {run_dir} left"
        assert not Path(run_dir).exists(), f"{run_dir} left"
    if step == "build":
        builds = Path(env["XDG_CACHE_HOME"]) / "kist-harness" / "builds"
        assert not list(builds.glob(".tmp-*")), "temporary build tree left"
        assert _gone(str(builds)) == [], "configure/make processes left"
    else:
        assert run_dirs, "the network never started"
    store = out / "store.sqlite"
    if store.exists():
        db = sqlite3.connect(store)
        try:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        finally:
            db.close()
