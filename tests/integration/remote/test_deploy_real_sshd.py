"""Deploy, verify, collect and roll back on a real OpenSSH relay host (a container).

Failure cases for real: unknown and changed host keys, a build that fails, a patch hash
that does not match, and the connection cut half-way (upload, switch). Every test checks
the captured logs hold no key material or cookie. All tests share one relay-host container,
reset to pristine before each (conftest.py); the relay that joins a private Tor network is
in test_relay_joins_network.py.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from harness.errors import HarnessError, StepError
from harness.remote import deploy, ssh
from harness.remote.ssh import HostKeyRefused
from harness.remote.tunnel import open_control_tunnel

pytestmark = pytest.mark.integration
RelayHost = Any  # the fixture of conftest.py (not imported: every area has a conftest module)
TOR = Path("/usr/bin/tor")


def test_deploy_verify_collect_rollback(relay_host: RelayHost, caplog: pytest.LogCaptureFixture,
                                        tmp_path: Path) -> None:
    caplog.set_level(logging.DEBUG)
    rh = relay_host
    with ssh.connect(rh.host) as session:
        out = deploy.push_binary(session, TOR, deploy.Settings("KISTLite", (("KISTSchedRunInterval", "3"),)))
        assert out.previous == "stock"
        assert out.verification.schedulers == "KISTLite"
        assert out.verification.control_listeners == ("127.0.0.1:21451",)
        assert rh.running_tor() == f"/opt/kist-harness/releases/{out.release.id}/tor"
        assert rh.state()["phase"] == "verified"
        # verify on demand, through the tunnel again
        again = deploy.verify(session, deploy.expected_release(session))
        assert again.version == out.verification.version
        with open_control_tunnel(rh.host, session=session) as tunnel, tunnel.controller() as ctl:
            assert ctl.get_conf("KISTSchedRunInterval") == "3"

    # live collection through the tunnel, as `collect --ssh` does
    from harness.control.auth import Credentials
    from harness.control.collector import CollectConfig, Collector
    from harness.remote.tunnel import ssh_transport
    from harness.store.db import open_store

    inv = tmp_path / "inventory.toml"
    inv.write_text(f'[hosts.relay1]\naddress = "{rh.host.address}"\nkey = "{rh.host.key}"\n'
                   f'known_hosts = "{rh.host.known_hosts}"\nrun = "process"\ncontrol_port = 21451\n')
    transport = ssh_transport("relay1", "21451", inv)
    try:
        assert transport.cookie_path is not None and transport.cookie_path.stat().st_mode & 0o077 == 0
        cookie_dir = transport.cookie_path.parent
        with open_store(tmp_path / "store.sqlite") as store:
            final = Collector(transport, Credentials(cookie_path=transport.cookie_path), store,
                              CollectConfig(run_id="remote-test", duration_s=3.0,
                                            snapshot_every_s=1.0)).run()
            kinds = store.kinds()
        assert final.events > 0 and sum(kinds.values()) > 0, kinds
    finally:
        transport.close()
    assert not cookie_dir.exists(), "the local cookie copy outlived the tunnel"

    with ssh.connect(rh.host) as session:
        state = deploy.rollback(session)
    assert state["current"] == "stock"
    assert rh.running_tor() == "/usr/bin/tor"
    rh.assert_no_secrets(caplog.text)


def test_control_socket_via_streamlocal(relay_host: RelayHost) -> None:
    rh = relay_host
    host = replace(rh.host, control_port=None, control_socket=deploy.PurePosixPath("/var/lib/kist-tor/control.sock"))
    with ssh.connect(host) as session:
        out = deploy.push_binary(session, TOR, deploy.Settings("Vanilla"))
    assert out.verification.schedulers == "Vanilla"
    assert all(a.startswith("unix:") for a in out.verification.control_listeners)
    # no TCP control listener is left once the socket is used
    # (a listener: local address, no peer, state 0A; earlier tests' connections may linger)
    assert ": 0100007F:53CB 00000000:0000 0A" not in rh.sh("cat /proc/net/tcp")


def test_unknown_and_changed_host_keys_refused(relay_host: RelayHost, tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    rh = relay_host
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(HostKeyRefused, match="not in"), ssh.connect(replace(rh.host, known_hosts=empty)):
        pass
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    other = (tmp_path / "other.pub").read_text().split()
    wrong = tmp_path / "wrong_hosts"
    wrong.write_text(f"{rh.host.address} {other[0]} {other[1]}\n")
    with pytest.raises(HostKeyRefused, match="HOST KEY CHANGED"), ssh.connect(replace(rh.host, known_hosts=wrong)):
        pass
    # accepting a new key is explicit, logged and recorded; the next connection needs no flag
    with ssh.connect(replace(rh.host, known_hosts=empty), accept_new_host_key=True) as s:
        assert s.run("echo hi").stdout == "hi\n"
    assert "accepted NEW host key" in caplog.text
    with ssh.connect(replace(rh.host, known_hosts=empty)) as s:
        assert s.run("true").ok
    rh.assert_no_secrets(caplog.text)


def test_failed_build_leaves_running_tor(relay_host: RelayHost, tmp_path: Path) -> None:
    rh = relay_host
    src = tmp_path / "tor-0.0.0"
    src.mkdir()
    (src / "configure").write_text("#!/bin/sh\necho 'configure: error: no C compiler' >&2\nexit 1\n")
    (src / "configure").chmod(0o755)
    tarball = tmp_path / "tor.tar"
    subprocess.run(["tar", "-cf", str(tarball), "-C", str(tmp_path), src.name], check=True)
    host = replace(rh.host, allow=frozenset({deploy.Permission.BUILD}))
    with ssh.connect(host) as session:
        first = deploy.push_binary(session, TOR, deploy.Settings("KIST"))
        with pytest.raises(HarnessError, match="no C compiler"):
            deploy.push_source(session, tarball, [], deploy.Settings("KISTLite"))
    assert rh.consistent() == first.release.id
    assert rh.sh("ls /opt/kist-harness/build").strip() == ""


def test_unpatched_tor_claimed_as_patched_is_rolled_back(relay_host: RelayHost,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """A release whose manifest names a patch series that tor does not show: rolled back.

    (The bootstrap failure case runs against a real network in test_relay_joins_network.py.)
    """
    caplog.set_level(logging.DEBUG)
    rh = relay_host
    with ssh.connect(rh.host) as session, \
            pytest.raises(StepError, match="rolled back automatically") as err:
        deploy.push_binary(session, TOR, deploy.Settings("KISTLite"), patch_hash="0123abcd")
    assert "patch hash is not reported" in str(err.value) and "KIST_RUN" in str(err.value)
    assert rh.consistent() == "stock"
    assert rh.state()["phase"] == "rolled-back"
    rh.assert_no_secrets(caplog.text + str(err.value))


@pytest.mark.parametrize("cut_at", ["cat > ", "kist-switch activate"])
def test_connection_cut_mid_deploy_leaves_consistent_host(relay_host: RelayHost, cut_at: str) -> None:
    """Drop the container off its network right when a step starts; the host stays whole."""
    rh = relay_host
    host = replace(rh.host, command_timeout_s=8)
    original = ssh.Session.run
    cut = threading.Event()

    def run(self: ssh.Session, command: str, **kw: object) -> object:
        if cut_at in command and (cut_at != "cat > " or ".tor.upload" in command) and not cut.is_set():
            cut.set()
            if cut_at == "cat > ":   # mid-upload: the network goes while the bytes flow
                threading.Timer(0.05, rh.network.disconnect, args=(rh.container,)).start()  # type: ignore[attr-defined]
            else:                    # mid-switch: the switch has just been started on the host
                result = original(self, command, **kw)  # type: ignore[arg-type]
                rh.network.disconnect(rh.container)  # type: ignore[attr-defined]
                return result
        return original(self, command, **kw)  # type: ignore[arg-type]

    ssh.Session.run = run  # type: ignore[method-assign,assignment]
    try:
        with ssh.connect(host) as session, pytest.raises(StepError):
            deploy.push_binary(session, TOR, deploy.Settings("KISTLite"))
    finally:
        ssh.Session.run = original  # type: ignore[method-assign]
    assert cut.is_set()
    current = rh.consistent()  # checked on the host itself, while it is still cut off
    if cut_at == "cat > ":       # nothing switched: the old tor runs, the upload is not a release
        assert current == "stock"
        assert not rh.sh("ls /opt/kist-harness/releases/*/tor | grep -v stock").strip()
    else:                        # the switch finished on the host without us: new, unverified
        assert current != "stock" and rh.state()["phase"] == "active"
    # reconnect: the next deploy finds a consistent host and completes
    with ssh.connect(rh.reconnect()) as session:
        out = deploy.push_binary(session, TOR, deploy.Settings("KISTLite"))
    assert rh.consistent() == out.release.id


def test_cli_push_verify_rollback_and_failed_host(relay_host: RelayHost, tmp_path: Path) -> None:
    """The command end to end; a second host with a wrong key fails alone, named in one error."""
    rh = relay_host
    bad_known = tmp_path / "bad_known_hosts"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True)
    other = (tmp_path / "k.pub").read_text().split()
    bad_known.write_text(f"{rh.host.address} {other[0]} {other[1]}\n")
    common = (f'address = "{rh.host.address}"\nkey = "{rh.host.key}"\nrun = "process"\n'
              'control_port = 21451\nrequire_bootstrap = false\ndata_dir = "/var/lib/kist-tor"\n')
    inv = tmp_path / "inventory.toml"
    inv.write_text(f'[hosts.good]\n{common}known_hosts = "{rh.host.known_hosts}"\n\n'
                   f'[hosts.spoofed]\n{common}known_hosts = "{bad_known}"\n')

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "harness.cli", "-vv", "deploy", *args,
                               "--inventory", str(inv)],
                              capture_output=True, text=True, timeout=300)

    push = cli("push", "good", "--binary", str(TOR), "--schedulers", "KISTLite")
    assert push.returncode == 0, push.stderr[-3000:]
    assert "good: tor 0.4" in push.stdout and "Schedulers KISTLite" in push.stdout
    verify = cli("verify", "good", "spoofed")
    assert verify.returncode == 3
    assert "good: tor" in verify.stdout
    assert "1 of 2 hosts failed: spoofed" in verify.stderr and "HOST KEY CHANGED" in verify.stderr
    assert "Traceback" not in verify.stderr
    back = cli("rollback", "good")
    assert back.returncode == 0 and "rolled back to stock" in back.stdout
    assert rh.running_tor() == "/usr/bin/tor"
    for out in (push, verify, back):
        rh.assert_no_secrets(out.stdout + out.stderr)


def test_interrupted_switch_is_recovered_on_next_connect(relay_host: RelayHost) -> None:
    """A host that died mid-switch (state says switching, nobody holds the lock) goes back."""
    rh = relay_host
    with ssh.connect(rh.host) as session:
        out = deploy.push_binary(session, TOR, deploy.Settings("KISTLite"))
    # what a power cut between the rename and the restart leaves: current renamed, tor dead
    rh.sh("kill $(cat /run/tor/tor.pid); sleep 1; cd /opt/kist-harness && "
          "printf 'phase=switching\\nfrom=stock\\nto=%s\\n' " + out.release.id + " > state")
    with ssh.connect(rh.host) as session:
        deploy.prepare_host(session)
        assert deploy.read_state(session)["phase"] == "rolled-back"
    assert rh.consistent() == "stock"
