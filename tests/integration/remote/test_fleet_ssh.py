"""`collect --fleet` through SSH: a relay host (real sshd, stock tor) whose link is cut mid-way.

The fleet names the relay host by its inventory name; the collector reaches its control port
through an SSH channel. The management network is then disconnected (the SSH connection dies
with it) and reconnected at a new address, which the inventory is updated to: the fleet
collector's transport opens a new SSH connection (host key checked again), and the relay's
session has one closed gap. The direct relay beside it never notices. About 1 minute.
"""

from __future__ import annotations

import glob
import tempfile
import threading
import time
from pathlib import Path

import pytest

from harness.control.fleet import FleetCollector, FleetSettings
from harness.control.fleetfile import load
from harness.control.replayport import ReplaySpec, replay_port
from harness.store.db import open_store
from harness.store.records import Kind

pytestmark = pytest.mark.integration


def _inventory(path: Path, host: object) -> None:
    path.write_text(f'[hosts.relay1]\naddress = "{host.address}"\nkey = "{host.key}"\n'  # type: ignore[attr-defined]
                    f'known_hosts = "{host.known_hosts}"\nrun = "process"\ncontrol_port = 21451\n')  # type: ignore[attr-defined]


def _sessions_with(store_path: Path, kind: str) -> set[str]:
    if not store_path.exists():
        return set()
    with open_store(store_path, readonly=True) as store:
        return {ctx.run_id for ctx, _r in store.records(kind)}


def test_fleet_over_ssh_survives_a_cut_link(tmp_path: Path, relay_host: object) -> None:
    rh = relay_host
    cookies_before = set(glob.glob(f"{tempfile.gettempdir()}/kist-fleet-cookie-*"))
    inv = tmp_path / "inventory.toml"
    _inventory(inv, rh.host)  # type: ignore[attr-defined]
    with replay_port(ReplaySpec(["650 BW 1 1"], repeat=10**6, rate=20, stream_event="BW")) as direct:
        (tmp_path / "fleet.toml").write_text(
            f'inventory = "inventory.toml"\n[relays.remote]\nssh = "relay1"\n'
            f'[relays.direct]\ncontrol = "127.0.0.1:{direct.port}"\n')
        fleet = load(tmp_path / "fleet.toml")
        store_path = tmp_path / "fleet.db"
        fc = FleetCollector(fleet.relays, FleetSettings(run_id="ssh", duration_s=50.0, snapshot_every_s=5.0,
                                                        stall_s=5.0, backoff_max_s=2.0, inventory=fleet.inventory),
                            store_path, processes=1)
        th = threading.Thread(target=fc.run)
        th.start()
        try:
            deadline = time.monotonic() + 30
            while len(_sessions_with(store_path, Kind.FEATURES)) < 2 and time.monotonic() < deadline:
                time.sleep(0.5)
            assert _sessions_with(store_path, Kind.FEATURES) == {"ssh/remote", "ssh/direct"}
            time.sleep(3)
            rh.network.disconnect(rh.container)  # type: ignore[attr-defined]
            cut = time.time()
            time.sleep(10)
            _inventory(inv, rh.reconnect())  # type: ignore[attr-defined]
            back = time.time()
        finally:
            th.join(120)
    states = fc.states
    assert states["remote"].state == "done" and states["direct"].state == "done"
    with open_store(store_path, readonly=True) as store:
        gaps = [(c.run_id, r.data) for c, r in store.records(Kind.GAP)]
        bw_after = [r.ts for c, r in store.records("BW") if c.run_id == "ssh/remote" and r.ts > back]
    assert [rid for rid, _g in gaps] == ["ssh/remote"], gaps
    (_rid, gap), = gaps
    assert not gap.get("open") and cut - 1 < gap["start"] < cut + 10 and gap["end"] > back - 1
    assert len(bw_after) >= 5, "no events after the SSH connection was reopened"
    assert set(glob.glob(f"{tempfile.gettempdir()}/kist-fleet-cookie-*")) == cookies_before
