"""Fixtures: a stock tor per test (see control_tor.py), its temp dir removed afterwards."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from control_tor import TOR, TorProcess


@pytest.fixture
def tor_workdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="kist-control-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def tor(tor_workdir: Path) -> Iterator[TorProcess]:
    if not Path(TOR).exists():
        pytest.skip("stock tor is not installed: run `kist-harness host setup`")
    t = TorProcess(tor_workdir).start()
    try:
        yield t
    finally:
        t.stop()
