"""Relay hosts for real: one container running OpenSSH sshd and stock tor, shared by the tests.

Built once per session: the sshd image (cached by content), keys in a temp dir, the
relay-host container on its own management network (SSH goes there; tests cut it). A test
taking ``relay_host`` gets that container reset to a pristine host first: nothing of
kist-harness installed, the host's own stock tor running (DisableNetwork). Tests taking
``network_relay`` also get a tiny private Tor network (Docker backend, stock tor) with the
container attached to its bridge, and the ``extra_torrc`` file that makes a deployed tor a
relay of it (written by ``harness.network.join``).

Everything is removed at the end of the session, also when a test fails: the container,
the management network (both labelled kist-harness.owner=remote), the Tor network (its own
labels, by ``harness.network.teardown``) and the temp dirs.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from harness.remote.inventory import Host, RunMode

LABEL = {"kist-harness.owner": "remote"}
RECIPE = Path(__file__).resolve().parents[3] / "docker" / "sshd"
SYSTEMD_RECIPE = RECIPE.parent / "sshd-systemd"
BASE = "kist-harness/base:bookworm"
OR_PORT = 21401
CONTROL_PORT = 21451
STOCK_TORRC = f"""\
DataDirectory /var/lib/kist-tor
SocksPort 0
DisableNetwork 1
ORPort 127.0.0.1:{OR_PORT}
Nickname kistremote
ContactInfo kist-harness test
ShutdownWaitLength 0
ControlPort 127.0.0.1:{CONTROL_PORT}
CookieAuthentication 1
"""
# the smallest network tor accepts for circuits: 3 authorities (also guards) and 2 exits
TINY_NETWORK = {"network": {"name": "remotejoin", "bootstrap_timeout_s": 240},
                "authorities": {"count": 3, "vote_guard": True},
                "relays": [{"name": "exit", "count": 2, "role": "exit", "vote_guard": True}]}


def _image(recipe: Path, name: str, base: str) -> str:
    """Build recipe FROM base once per content (tag = hash of the recipe and the base image id)."""
    base_id = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", base],
                             capture_output=True, text=True, check=True).stdout.strip()
    digest = hashlib.sha256(base_id.encode())
    for f in sorted(recipe.iterdir()):
        digest.update(f.name.encode() + f.read_bytes())
    tag = f"kist-harness/{name}:{digest.hexdigest()[:12]}"
    if subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode:
        subprocess.run(["docker", "build", "-q", "--label", "kist-harness.owner=remote", "--build-arg",
                        f"BASE={base}", "-t", tag, str(recipe)], check=True, capture_output=True)
    return tag


def sshd_image() -> str:
    """docker/sshd on the base image."""
    from harness.network.images import ensure_base

    ensure_base()   # kist-harness/base:bookworm, made without a registry on a fresh machine
    return _image(RECIPE, "sshd", BASE)


def systemd_image() -> str:
    """docker/sshd-systemd on the sshd image: the same host, with systemd as PID 1."""
    return _image(SYSTEMD_RECIPE, "sshd-systemd", sshd_image())


@dataclass
class RelayHost:
    container: Any
    network: Any          # the management network SSH goes through
    host: Host
    keydir: Path

    def sh(self, cmd: str) -> str:
        res = self.container.exec_run(["sh", "-c", cmd])
        return str(res.output.decode(errors="replace"))

    def start_stock_tor(self) -> None:
        self.sh("mkdir -p -m 700 /var/lib/kist-tor && mkdir -p /run/tor && tor -f /etc/tor/torrc --RunAsDaemon 1 "
                "--PidFile /run/tor/tor.pid --Log 'notice file /var/log/tor-stock.log'")

    def address_on(self, network_name: str) -> str:
        self.container.reload()
        return str(self.container.attrs["NetworkSettings"]["Networks"][network_name]["IPAddress"])

    def reconnect(self) -> Host:
        """Put the container back on its management network; return the host record for its address."""
        self.network.connect(self.container)
        address = self.address_on(self.network.name)
        pub = (self.keydir / "host_key.pub").read_text().split()
        self.host.known_hosts.write_text(f"{address} {pub[0]} {pub[1]}\n")
        self.host = replace(self.host, address=address)
        _wait_sshd(self)
        return self.host

    def running_tor(self) -> str:
        """The executable of the running tor (resolved), or '' if none runs."""
        return self.sh("p=$(cat /run/tor/tor.pid 2>/dev/null) && readlink -f /proc/$p/exe").strip()

    def state(self) -> dict[str, str]:
        text = self.sh("cat /opt/kist-harness/state")
        return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)

    def link(self, name: str) -> str:
        """The release ``current`` or ``previous`` names on the host."""
        return self.sh(f"basename $(readlink /opt/kist-harness/{name})").strip()

    def consistent(self) -> str:
        """The host runs exactly what `current` names, with no switch in progress; return its id."""
        deadline = time.monotonic() + 60
        while self.sh("test -d /opt/kist-harness/lock && echo busy").strip() and time.monotonic() < deadline:
            time.sleep(0.5)
        current = self.link("current")
        exe = self.running_tor()
        want = "/usr/bin/tor" if current == "stock" else f"/opt/kist-harness/releases/{current}/tor"
        assert exe == want, f"running {exe!r} but current is {current}"
        assert self.state().get("phase") in {"active", "verified", "rolled-back"}
        return current

    def secrets(self) -> list[str]:
        """Strings that must never appear in logs: private keys, public key blobs, the cookie."""
        out = []
        for name in ("client_key", "host_key"):
            body = (self.keydir / name).read_text().splitlines()
            out += [line for line in body if line and not line.startswith("-----")]
            out.append((self.keydir / f"{name}.pub").read_text().split()[1])
        chunks, _ = self.container.get_archive("/var/lib/kist-tor/control_auth_cookie")
        with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
            member = tar.extractfile("control_auth_cookie")
            assert member is not None
            raw = member.read()
        return [*out, raw.hex(), raw.hex().upper()]

    def assert_no_secrets(self, text: str | bytes) -> None:
        data = text.encode(errors="replace") if isinstance(text, str) else text
        for secret in self.secrets():
            assert secret.encode() not in data, "a secret reached the logs or the store"

    def reset(self) -> None:
        """A pristine host: no kist-harness install, its own stock tor running (same identity)."""
        self.container.reload()
        if self.network.name not in self.container.attrs["NetworkSettings"]["Networks"]:
            self.reconnect()   # a test that cut the link failed before restoring it
        self.sh("p=$(cat /run/tor/tor.pid 2>/dev/null); if [ -n \"$p\" ]; then kill $p; i=0; "
                "while kill -0 $p 2>/dev/null && [ $i -lt 100 ]; do i=$((i+1)); sleep 0.1; done; "
                "kill -9 $p 2>/dev/null; fi; rm -rf /opt/kist-harness /run/tor/tor.pid && "
                "find /var/lib/kist-tor -mindepth 1 -maxdepth 1 ! -name keys -exec rm -rf {} + ; "
                "cp /etc/ssh/kist/torrc /etc/tor/torrc")
        self.start_stock_tor()


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kist-test", "-f", str(path)],
                   check=True)


def _tar(files: dict[str, tuple[bytes, int]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture(scope="session")
def docker_client() -> Any:
    import importlib

    try:
        client = importlib.import_module("docker").from_env()  # by name: ./docker/ shadows it
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means no usable engine
        pytest.skip(f"no Docker engine: {exc}")
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen missing: run `kist-harness host setup` (openssh-client)")
    return client


@pytest.fixture(scope="session")
def relay_machine(docker_client: Any) -> Iterator[RelayHost]:
    """The relay-host container, its management network and keys, for the whole session."""
    image = sshd_image()
    keydir = Path(tempfile.mkdtemp(prefix="kist-remote-"))
    network = container = None
    try:
        _keygen(keydir / "host_key")
        _keygen(keydir / "client_key")
        name = f"kist-remote-{keydir.name[-8:]}"
        network = docker_client.networks.create(name, labels=LABEL)
        container = docker_client.containers.create(image, labels=LABEL, network=network.name, name=name)
        container.put_archive("/etc/ssh/kist", _tar({
            "ssh_host_ed25519_key": ((keydir / "host_key").read_bytes(), 0o600),
            # public, and read as the login user (root, or kist: test_login_modes.py)
            "authorized_keys": ((keydir / "client_key.pub").read_bytes(), 0o644),
            "torrc": (STOCK_TORRC.encode(), 0o644)}))
        container.start()
        container.reload()
        address = container.attrs["NetworkSettings"]["Networks"][network.name]["IPAddress"]
        pub = (keydir / "host_key.pub").read_text().split()
        (keydir / "known_hosts").write_text(f"{address} {pub[0]} {pub[1]}\n")
        host = Host(name="relay1", address=address, key=keydir / "client_key",
                    known_hosts=keydir / "known_hosts", run=RunMode.PROCESS,
                    pid_file=PurePosixPath("/run/tor/tor.pid"), control_port=CONTROL_PORT,
                    data_dir=PurePosixPath("/var/lib/kist-tor"),
                    require_bootstrap=False, connect_timeout_s=10, command_timeout_s=60,
                    verify_timeout_s=30)
        rh = RelayHost(container, network, host, keydir)
        _wait_sshd(rh)
        rh.reset()
        yield rh
    finally:
        if container is not None:
            container.remove(force=True)
        if network is not None:
            network.remove()
        shutil.rmtree(keydir, ignore_errors=True)


@pytest.fixture
def relay_host(relay_machine: RelayHost) -> RelayHost:
    """The shared relay host, reset to pristine (stock tor with DisableNetwork) for this test."""
    relay_machine.reset()
    return relay_machine


@pytest.fixture(scope="session")
def private_network(docker_client: Any) -> Iterator[Any]:
    """A tiny private Tor network on the Docker backend, up until the session ends."""
    from harness.config import parse_scenario
    from harness.network import lifecycle

    t0 = time.monotonic()
    with lifecycle.up(parse_scenario(TINY_NETWORK, "tests/integration/remote (tiny)"), "docker") as net:
        print(f"\n[remote] private network {net.name} up in {time.monotonic() - t0:.1f} s "
              f"(bootstrap {net.timings.get('bootstrap_s', 0):.1f} s)")
        yield net


@dataclass(frozen=True)
class NetworkRelay:
    """The relay host attached to the private network, with the torrc lines that join it."""

    rh: RelayHost
    network: Any          # harness.network.RunningNetwork
    address: str          # the container's address on the network's bridge
    extra_torrc: Path     # harness.network.join.relay_torrc for that address

    @property
    def host(self) -> Host:
        """The inventory record of a relay of the network: bootstrap is required."""
        return replace(self.rh.host, extra_torrc=self.extra_torrc, require_bootstrap=True,
                       verify_timeout_s=120)


@pytest.fixture(scope="session")
def network_relay(relay_machine: RelayHost, private_network: Any,
                  docker_client: Any) -> Iterator[NetworkRelay]:
    """Attach the relay host to the network's bridge (detached again before the network goes)."""
    from harness.network.join import relay_torrc

    bridge = docker_client.networks.get(private_network.docker_network)
    bridge.connect(relay_machine.container)
    try:
        address = relay_machine.address_on(bridge.name)
        extra = relay_machine.keydir / "join.torrc"
        extra.write_text(relay_torrc(private_network, address, OR_PORT))
        yield NetworkRelay(relay_machine, private_network, address, extra)
    finally:
        bridge.disconnect(relay_machine.container, force=True)


@pytest.fixture(scope="session")
def patched_build() -> Any:
    """The patched tor (harness.build, cached after the first build on a machine)."""
    from harness.build import default_patches_dir, ensure_built

    return ensure_built(patches_dir=default_patches_dir())


def _wait_sshd(rh: RelayHost, timeout_s: float = 30.0) -> None:
    import socket

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((rh.host.address, 22), timeout=1) as s:
                if s.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.2)
    logs = rh.container.logs(tail=20).decode(errors="replace")
    raise RuntimeError(f"sshd did not answer within {timeout_s} s; last log lines:\n{logs}")


# The systemd host's own torrc: Debian's tor@default with the service defaults file, kept off
# any network until a deploy joins it to the private one.
SYSTEMD_TORRC = f"""\
DisableNetwork 1
SocksPort 0
ORPort 127.0.0.1:{OR_PORT}
Nickname kistsystemd
ContactInfo kist-harness test
ShutdownWaitLength 0
"""


@dataclass(frozen=True)
class SystemdRelay:
    """A relay host whose tor is Debian's tor@default unit under systemd, on the network's bridge."""

    container: Any
    host: Host            # run = systemd; extra_torrc joins the private network
    keydir: Path

    def sh(self, cmd: str) -> str:
        return str(self.container.exec_run(["sh", "-c", cmd]).output.decode(errors="replace"))

    def unit_exe(self) -> str:
        """The executable of tor@default's main process ('' if the unit runs none)."""
        # argv[0], not /proc/PID/exe: tor runs as debian-tor, and reading another user's exe
        # link needs CAP_SYS_PTRACE, which containers do not get
        return self.sh("p=$(systemctl show -p MainPID --value tor@default); [ \"$p\" != 0 ] && "
                       "readlink -f \"$(tr '\\0' '\\n' < /proc/$p/cmdline | head -n 1)\"").strip()


@pytest.fixture(scope="session")
def systemd_relay(docker_client: Any, private_network: Any) -> Iterator[SystemdRelay]:
    """A second relay host, systemd as PID 1 (SYS_ADMIN, private cgroup namespace, no --privileged)."""
    from harness.network.join import relay_torrc

    image = systemd_image()
    keydir = Path(tempfile.mkdtemp(prefix="kist-remote-sd-"))
    container = None
    try:
        _keygen(keydir / "host_key")
        _keygen(keydir / "client_key")
        container = docker_client.containers.create(
            image, labels=LABEL, network=private_network.docker_network, name=f"kist-remote-sd-{keydir.name[-8:]}",
            cap_add=["SYS_ADMIN"], cgroupns="private", tmpfs={"/run": "", "/run/lock": ""})
        container.put_archive("/etc/ssh/kist", _tar({
            "ssh_host_ed25519_key": ((keydir / "host_key").read_bytes(), 0o600),
            "authorized_keys": ((keydir / "client_key.pub").read_bytes(), 0o600)}))
        container.put_archive("/etc/tor", _tar({"torrc": (SYSTEMD_TORRC.encode(), 0o644)}))
        container.start()
        container.reload()
        address = container.attrs["NetworkSettings"]["Networks"][private_network.docker_network]["IPAddress"]
        pub = (keydir / "host_key.pub").read_text().split()
        (keydir / "known_hosts").write_text(f"{address} {pub[0]} {pub[1]}\n")
        (keydir / "join.torrc").write_text(relay_torrc(private_network, address, OR_PORT))
        host = Host(name="relay-systemd", address=address, key=keydir / "client_key",
                    known_hosts=keydir / "known_hosts", run=RunMode.SYSTEMD, unit="tor@default",
                    defaults_torrc=PurePosixPath("/usr/share/tor/tor-service-defaults-torrc"),
                    control_port=CONTROL_PORT, connect_timeout_s=10, command_timeout_s=120,
                    verify_timeout_s=120, extra_torrc=keydir / "join.torrc")
        relay = SystemdRelay(container, host, keydir)
        deadline = time.monotonic() + 60
        while relay.sh("systemctl is-active ssh tor@default").split() != ["active", "active"]:
            if time.monotonic() > deadline:
                raise RuntimeError("systemd did not start ssh and tor@default: "
                                   + relay.sh("systemctl --failed --no-pager; journalctl -n 20 --no-pager"))
            time.sleep(0.5)
        yield relay
    finally:
        if container is not None:
            container.remove(force=True)
        shutil.rmtree(keydir, ignore_errors=True)
