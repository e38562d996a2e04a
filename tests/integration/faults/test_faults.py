"""The fault benchmark's properties in short form (2 faults each, not 10): ~2 minutes.

One local network with the patched relay under traffic serves every test (module
fixture). Each fault is real: SIGKILL, a tmpfs that fills, iptables resets and `ss -K`.
`python -m harness.faults` runs the full counts and prints the figures.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lab() -> Iterator[object]:
    if os.geteuid() != 0:
        pytest.skip("the faults need root (tmpfs, iptables)")
    for tool in ("iptables", "ss", "mount"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    from harness.faults import common

    with tempfile.TemporaryDirectory(prefix="kist-faults-test-") as tmp, common.lab(Path(tmp)) as lab:
        yield lab


def test_tor_sigkilled_twice_loses_no_committed_record_and_each_kill_is_a_gap(lab) -> None:
    from harness.faults import tor_kill

    fig = tor_kill.run(lab, kills=2)
    assert fig.ok, fig.line()
    assert fig.values["committed_lost"] == 0 and fig.values["gaps"] == 2
    assert fig.values["unexplained_silences"] == 0 and fig.values["stored"] == fig.values["collector_stored"]
    assert fig.values["run_numbers_missing"] == 0 and fig.values["kist_runs"] > 0


def test_collect_sigkilled_twice_leaves_a_sound_store_that_a_restart_appends_to(lab) -> None:
    from harness.faults import collector_kill

    fig = collector_kill.run(lab, kills=2)
    assert fig.ok, fig.line()
    assert fig.values["integrity_ok"] == "2/2" and fig.values["restarts_appended"] == "2/2"
    assert fig.values["orphan_workers"] == 0


def test_a_full_filesystem_stops_collect_with_a_clear_error_and_keeps_what_was_committed(lab) -> None:
    from harness.faults import disk_full

    fig = disk_full.run(lab)
    assert fig.ok, fig.line()
    assert fig.values["exit"] == 3 and not fig.values["traceback"]
    assert "disk is full" in str(fig.values["message"]) and "records committed before it are kept" in str(
        fig.values["message"])
    assert not [m for m in Path("/proc/mounts").read_text().splitlines() if "kist-faults-full-" in m]


def test_control_port_closed_twice_reconnects_with_backoff_and_records_gaps(lab) -> None:
    from harness.faults import control_flap

    fig = control_flap.run(lab, flaps=2)
    assert fig.ok, fig.line()
    assert fig.values["gaps"] == 2 and fig.values["reconnects"] == 2
    assert "kist-harness.faults" not in os.popen("iptables -S INPUT").read(), "the rule is removed"
