"""The README's main-job command, as written, on a bare Debian 12 container (harness.baremachine).

The container starts from the debootstrap base image: no tor, no docker.io, no build
dependencies, no venv. Only the README's stated prerequisite (python3 with venv) is
installed; the command itself must install everything else, build Tor, fall back to the
local backend (no Docker engine can start unprivileged) and finish with 0 divergences.
This is the check a developer's own machine cannot make: its hand-installed packages hide
a missing install step. About 12 minutes here (Tor's build is most of it).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness import baremachine

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_readme_command_is_what_the_check_runs() -> None:
    assert baremachine.readme_command(ROOT / "README.md").endswith(".venv/bin/kist-harness run")


def test_main_job_on_a_bare_machine() -> None:
    lines: list[str] = []
    res = baremachine.check(ROOT, say=lines.append)
    out = "\n".join(lines)
    print(f"bare machine: {res.command!r} exited {res.returncode} in {res.seconds:.0f} s "
          f"(prerequisites {res.prerequisites_s:.0f} s); {res.summary}")
    assert res.returncode == 0, res.output_tail
    assert res.divergences == 0, res.summary
    assert "installed" in out and "make:" in out, "the packages and Tor's build were done by the command"
    assert "using the local backend" in out or "Local backend" in out
    left = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={baremachine.LABEL}"],
                          capture_output=True, text=True, check=True).stdout.split()
    assert left == [], "the bare container was not removed"
