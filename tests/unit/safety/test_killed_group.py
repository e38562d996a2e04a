"""A command stopped by an exception leaves no process behind that still writes to its directory.

CI once saw a SIGTERM during ``configure`` turn into ``OSError: Directory not empty``: the
build's temp dir was removed while configure's children were still exiting. These tests
use real processes in a real process group.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from harness import outdir, signals
from harness.proc import run, spawn

WRITER = 'echo $$; while :; do (touch "$D/f$RANDOM"; sleep 0.001) & wait; done'


class _Stop(Exception):
    pass


def test_group_is_gone_when_run_raises(tmp_path: Path) -> None:
    pgid: list[int] = []

    def first_line(line: str) -> None:
        pgid.append(int(line))
        raise _Stop

    with pytest.raises(_Stop):
        run(["sh", "-c", WRITER], env={**os.environ, "D": str(tmp_path)}, on_line=first_line)
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid[0], 0)
    before = sorted(tmp_path.iterdir())
    after = sorted(tmp_path.iterdir())
    assert before == after  # nothing writes there any more
    shutil.rmtree(tmp_path)


def test_scratch_dir_keeps_the_original_exception_and_leaves_nothing(tmp_path: Path) -> None:
    made: list[Path] = []
    with pytest.raises(_Stop), outdir.scratch_dir(".tmp-", tmp_path) as scratch:
        made.append(scratch)
        (scratch / "src").mkdir()
        (scratch / "src" / "x").write_text("x")
        raise _Stop
    assert made and not made[0].exists()
    assert list(tmp_path.iterdir()) == []


class _SignalAfterFork(subprocess.Popen):  # type: ignore[type-arg]
    """The CI race made deterministic: SIGTERM arrives after the fork, before Popen returns."""

    children: list[int] = []

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        _SignalAfterFork.children.append(self.pid)
        os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.parametrize("how", ["run", "spawn"])
def test_a_signal_during_popen_leaves_no_child(monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    _SignalAfterFork.children.clear()
    monkeypatch.setattr(subprocess, "Popen", _SignalAfterFork)
    with pytest.raises(signals.Stopped), signals.stop_on_signals():
        if how == "run":
            run(["sleep", "30"])
        else:
            spawn(["sleep", "30"], start_new_session=True)
    (pid,) = _SignalAfterFork.children
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
