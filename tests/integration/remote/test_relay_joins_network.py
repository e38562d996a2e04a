"""A patched relay deployed over SSH that joins a private Tor network, for real.

The relay host (an sshd container) is attached to a tiny private network's bridge; the
patched tor is deployed with the inventory's ``extra_torrc`` written by
``harness.network.join`` (TestingTorNetwork, the network's DirAuthority lines, an ORPort
on the bridge). Verified through the control port over SSH: it bootstraps to 100% and the
authorities hold its descriptor. Then ``kist-harness collect --ssh`` runs as a subprocess
through the tunnel while the relay builds circuits, and the exported runs replay through
the reference model. Finally a release that cannot reach its authorities is rolled back,
and the previous release runs and bootstraps again.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from harness.errors import StepError
from harness.remote import deploy, ssh
from harness.remote.tunnel import open_control_tunnel

pytestmark = pytest.mark.integration
NetworkRelay = Any  # conftest.py's fixture type (not imported: every area has a conftest module)


@pytest.fixture
def joined(network_relay: NetworkRelay, patched_build: Any) -> deploy.Outcome:
    """The patched tor running on the relay host as a relay of the network (deployed once;
    later tests find the same release running, or switch back to it without an upload)."""
    t0 = time.monotonic()
    with ssh.connect(network_relay.host) as session:
        out = deploy.push_binary(session, patched_build.tor, deploy.Settings("KIST"),
                                 patch_hash=patched_build.series_hash)
    print(f"\n[remote] deploy to a relay of the network: {time.monotonic() - t0:.1f} s, "
          f"bootstrap {out.verification.bootstrap}% after {out.verification.bootstrap_s:.1f} s "
          f"(from the first control connection)")
    return out


def _cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def test_patched_relay_joins_and_bootstraps(joined: deploy.Outcome, network_relay: NetworkRelay,
                                            patched_build: Any) -> None:
    from stem.control import Controller

    from harness.config import Role

    nr = network_relay
    v = joined.verification
    assert v.bootstrap == 100 and v.schedulers == "KIST"
    assert v.patch_events and v.patch_hash == patched_build.series_hash
    assert nr.rh.consistent() == joined.release.id
    with ssh.connect(nr.host) as session, open_control_tunnel(nr.host, session=session) as tunnel, \
            tunnel.controller() as ctl:
        fingerprint = ctl.get_info("fingerprint")
        assert ctl.get_conf("ORPort") == f"{nr.address}:21401"
        assert ctl.get_conf("TestingTorNetwork") == "1"
    # the network's authorities hold the relay's descriptor: it joined, not only bootstrapped
    authority = nr.network.by_role(Role.AUTHORITY)[0]
    deadline = time.monotonic() + 90
    with Controller.from_port(address=authority.control_host, port=authority.control_port) as ctl:
        ctl.authenticate()  # the cookie path PROTOCOLINFO names is valid here (bind mount)
        while ctl.get_info(f"desc/id/{fingerprint}", None) is None:
            assert time.monotonic() < deadline, f"{authority.name} never got the relay's descriptor"
            time.sleep(1)


def test_collect_cli_through_ssh_tunnel(joined: deploy.Outcome, network_relay: NetworkRelay,
                                        patched_build: Any, tmp_path: Path) -> None:
    """`kist-harness collect --ssh HOST --inventory FILE` end to end, as a user runs it."""
    from harness.store.db import open_store

    nr = network_relay
    host = nr.host
    inv = tmp_path / "inventory.toml"
    inv.write_text(f'[hosts.relay1]\naddress = "{host.address}"\nkey = "{host.key}"\n'
                   f'known_hosts = "{host.known_hosts}"\nrun = "process"\ncontrol_port = 21451\n'
                   f'data_dir = "/var/lib/kist-tor"\nextra_torrc = "{host.extra_torrc}"\n')
    store, runs = tmp_path / "store.sqlite", tmp_path / "runs.jsonl"
    # the flag wins over the environment (which names a file that does not exist)
    env = {**os.environ, "KIST_HARNESS_INVENTORY": str(tmp_path / "not-this.toml")}
    cmd = [sys.executable, "-m", "harness.cli", "collect", "--ssh", "relay1", "--inventory", str(inv),
           "--duration", "20s", "--snapshot-every", "2s", "--out", str(store),
           "--patch-hash", patched_build.series_hash, "--export-runs", str(runs)]
    fingerprints = [n.fingerprint for n in nr.network.relays]
    built = attempts = 0
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as proc, \
            ssh.connect(host) as session, open_control_tunnel(host, session=session) as tunnel, \
            tunnel.controller() as ctl:
        relay_fp = ctl.get_info("fingerprint")
        deadline = time.monotonic() + 120
        # the relay carries cells: its own circuits through the network, built and closed
        while proc.poll() is None and time.monotonic() < deadline:
            attempts += 1
            path = [fingerprints[attempts % len(fingerprints)], fingerprints[(attempts + 1) % len(fingerprints)]]
            try:
                circ = ctl.extend_circuit("0", path, await_build=True, timeout=10)
                ctl.close_circuit(circ)
                built += 1
                time.sleep(0.2)   # a steady trickle of cells, not a load test of a 2-core box
            except Exception:  # noqa: BLE001 - a circuit that fails is retried with the next path
                time.sleep(0.5)
        out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    print(f"\n[remote] collect --ssh: {built} of {attempts} circuits built by the relay; {out.strip()}")
    assert "records stored" in out and built > 0
    with open_store(store, readonly=True) as st:
        kinds = st.kinds()
        # events are tagged with the relay's identity and the series (the collector's own
        # session records, written before it has asked tor, may say "unknown")
        tags = {kind: {(c.fingerprint, c.patch_hash) for c, _ in st.records(kind)}
                for kind in ("BW", "KIST_RUN")}
    print(f"[remote] store: {sum(kinds.values())} records {dict(sorted(kinds.items()))}")
    assert kinds.get("BW", 0) > 0, kinds   # standard events, always
    assert kinds.get("KIST_RUN", 0) > 0, kinds  # the patch's, since the relay carried cells
    assert tags == {kind: {(relay_fp, patched_build.series_hash)} for kind in tags}, tags
    replay = _cli("model", "replay", str(runs))
    print(f"[remote] model replay: {replay.stdout.strip().splitlines()[-1]}")
    assert replay.returncode == 0 and "divergences=0" in replay.stdout, replay.stdout[-2000:]
    assert not replay.stdout.startswith("runs=0 ")
    nr.rh.assert_no_secrets(out + err)
    nr.rh.assert_no_secrets(b"".join(p.read_bytes() for p in tmp_path.glob("store.sqlite*")))


def test_relay_that_cannot_reach_its_authorities_is_rolled_back(
        joined: deploy.Outcome, network_relay: NetworkRelay, patched_build: Any, tmp_path: Path) -> None:
    """The new release starts but never bootstraps (its authorities do not answer): the host
    goes back to the previous binary and config, which runs and bootstraps again."""
    nr = network_relay
    rh = nr.rh
    before = {name: rh.link(name) for name in ("current", "previous")}
    config = rh.sh(f"sha256sum /opt/kist-harness/releases/{before['current']}/torrc "
                   f"/opt/kist-harness/releases/{before['current']}/tor")
    assert before["current"] == joined.release.id
    # the same network settings, but authorities of another network at an address on the
    # bridge that nobody holds: nothing answers, and the cached consensus is not theirs
    unused = nr.address.rsplit(".", 1)[0] + ".254"
    bad = tmp_path / "unreachable.torrc"
    lines = []
    for line in nr.extra_torrc.read_text().splitlines():
        if line.startswith("DirAuthority "):
            name, flags = line.split()[1], line.split()[2:-2]
            port = line.split()[-2].rsplit(":", 1)[1]
            ident = os.urandom(20).hex().upper()
            flags = [f"v3ident={os.urandom(20).hex().upper()}" if f.startswith("v3ident=") else f
                     for f in flags]
            line = " ".join(["DirAuthority", name, *flags, f"{unused}:{port}", ident])
        lines.append(line)
    bad.write_text("\n".join(lines) + "\n")
    host = replace(nr.host, extra_torrc=bad, verify_timeout_s=15)
    with ssh.connect(host) as session, pytest.raises(StepError, match="rolled back automatically") as err:
        deploy.push_binary(session, patched_build.tor, deploy.Settings("KIST"),
                           patch_hash=patched_build.series_hash)
    assert "bootstrap reached" in str(err.value) and "not 100%" in str(err.value)
    # the previous binary and config, running; previous still names what it named before
    assert rh.consistent() == before["current"]
    assert {name: rh.link(name) for name in ("current", "previous")} == before
    assert rh.state()["phase"] == "rolled-back" and rh.state()["failed"] != before["current"]
    assert rh.sh(f"sha256sum /opt/kist-harness/releases/{before['current']}/torrc "
                 f"/opt/kist-harness/releases/{before['current']}/tor") == config
    with ssh.connect(nr.host) as session:
        again = deploy.verify(session, deploy.expected_release(session))
        assert again.bootstrap == 100
        print(f"\n[remote] previous release bootstrapped again after {again.bootstrap_s:.1f} s")
        # an explicit rollback now goes to the release before, never to the failed one
        state = deploy.rollback(session)
    assert state["current"] == before["previous"] and rh.consistent() == before["previous"]
    rh.assert_no_secrets(str(err.value))
