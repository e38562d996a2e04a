"""`kist-harness deploy push` stopped by a signal leaves the relay host as a failure would.

Two moments on a real OpenSSH host (the shared relay container of conftest.py):
- while connecting and uploading: nothing is switched, the stock tor keeps running;
- while verifying the new release (the host has no network, so a verification that waits
  for bootstrap is still waiting when the signal lands): the release is abandoned and the
  host is back on stock, exactly as after a failed verification.
Either way: exit 128 + signum, one line naming the signal, no traceback, no secret.
"""

from __future__ import annotations

import re
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration
RelayHost = Any
TOR = Path("/usr/bin/tor")
MOMENTS = {
    "upload": re.compile(r": connected$"),
    "verify": re.compile(r"kist-switch activate \S+ -> "),
}


def _inventory(rh: RelayHost, tmp_path: Path) -> Path:
    inv = tmp_path / "inventory.toml"
    inv.write_text(f'[hosts.good]\naddress = "{rh.host.address}"\nkey = "{rh.host.key}"\nrun = "process"\n'
                   f'control_port = 21451\nrequire_bootstrap = true\nverify_timeout_s = 120\n'
                   f'data_dir = "/var/lib/kist-tor"\nknown_hosts = "{rh.host.known_hosts}"\n')
    return inv


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP],
                         ids=lambda s: signal.Signals(s).name)
@pytest.mark.parametrize("moment", list(MOMENTS))
def test_push_stopped_by_a_signal_leaves_the_host_consistent(relay_host: RelayHost, tmp_path: Path,
                                                             moment: str, sig: int, signal_when: Any) -> None:
    rh = relay_host
    argv = [sys.executable, "-m", "harness.cli", "-v", "deploy", "push", "good", "--inventory",
            str(_inventory(rh, tmp_path)), "--binary", str(TOR), "--schedulers", "KISTLite"]
    proc, lines, sent = signal_when(argv, MOMENTS[moment], sig, timeout=240)
    err = "".join(lines)
    assert sent, err[-2000:]
    assert proc.returncode == 128 + sig, err[-3000:]
    assert f"interrupted by {signal.Signals(sig).name}" in err and "Traceback" not in err
    assert rh.running_tor() == "/usr/bin/tor", "the stock tor must be what runs"
    if moment == "verify":
        assert "rolled back" in err
        assert rh.consistent() == "stock"
    assert rh.sh("test -d /opt/kist-harness/lock && echo locked").strip() == ""
    rh.assert_no_secrets(err)
