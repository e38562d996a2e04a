"""The local backend stops processes it never recorded, but only those naming its run directory."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.network.local import LocalBackend


def _sleeper(run_dir: Path) -> subprocess.Popen[bytes]:
    # argv names the run dir, as tor's `-f RUN_DIR/torrc` does
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", str(run_dir)])


def test_stop_sweeps_unrecorded_children_of_this_run_only() -> None:
    """A child spawned when a signal interrupted Popen is unrecorded; stop() must still end it."""
    with tempfile.TemporaryDirectory(prefix="kist-net-sweep-") as mine, \
            tempfile.TemporaryDirectory(prefix="kist-net-other-") as other:
        backend = LocalBackend()
        backend._marker = mine
        orphan, bystander = _sleeper(Path(mine)), _sleeper(Path(other))
        try:
            backend.stop()
            assert orphan.wait(timeout=10) is not None
            time.sleep(0.2)
            assert bystander.poll() is None, "a process of another run was stopped"
        finally:
            for p in (orphan, bystander):
                p.kill()
                p.wait()


def test_stop_without_a_run_dir_touches_nothing() -> None:
    """Before a layout exists the marker is empty; an empty marker must not match every process."""
    with tempfile.TemporaryDirectory(prefix="kist-net-sweep-") as d:
        p = _sleeper(Path(d))
        try:
            LocalBackend().stop()
            time.sleep(0.2)
            assert p.poll() is None, "an empty marker stopped an unrelated process"
        finally:
            p.kill()
            p.wait()
