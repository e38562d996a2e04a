"""A relay host for real: a container running OpenSSH sshd and stock tor (DisableNetwork).

Keys are generated per test session in a temp dir (removed after); the container sits on
a network this fixture creates; every Docker object carries kist-harness.owner=remote and
is removed afterwards, also when a test fails.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

import pytest

from harness.remote.inventory import Host, RunMode

LABEL = {"kist-harness.owner": "remote"}
RECIPE = Path(__file__).resolve().parents[3] / "docker" / "sshd"
BASE = "kist-harness/base:bookworm"
STOCK_TORRC = """\
DataDirectory /var/lib/kist-tor
SocksPort 0
DisableNetwork 1
ORPort 127.0.0.1:24001
Nickname kistremote
ContactInfo kist-harness test
ShutdownWaitLength 0
ControlPort 127.0.0.1:24051
CookieAuthentication 1
"""


def _ensure_base() -> None:
    """kist-harness/base:bookworm, created by harness.images on a fresh machine."""
    try:
        from harness.images import ensure_base
    except ImportError:
        if subprocess.run(["docker", "image", "inspect", BASE], capture_output=True).returncode:
            pytest.skip(f"{BASE} is missing and harness.images is not there to create it")
        return
    ensure_base()


def sshd_image() -> str:
    """Build docker/sshd once per content (tag = hash of the recipe and the base image id)."""
    _ensure_base()
    base_id = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", BASE],
                             capture_output=True, text=True, check=True).stdout.strip()
    digest = hashlib.sha256(base_id.encode())
    for f in sorted(RECIPE.iterdir()):
        digest.update(f.name.encode() + f.read_bytes())
    tag = f"kist-harness/sshd:{digest.hexdigest()[:12]}"
    if subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode:
        subprocess.run(["docker", "build", "-q", "--label", "kist-harness.owner=remote",
                        "-t", tag, str(RECIPE)], check=True, capture_output=True)
    return tag


@dataclass
class RelayHost:
    container: object
    network: object
    host: Host
    keydir: Path

    def sh(self, cmd: str) -> str:
        res = self.container.exec_run(["sh", "-c", cmd])  # type: ignore[attr-defined]
        return res.output.decode(errors="replace")

    def start_stock_tor(self) -> None:
        self.sh("mkdir -p -m 700 /var/lib/kist-tor && mkdir -p /run/tor && tor -f /etc/tor/torrc --RunAsDaemon 1 "
                "--PidFile /run/tor/tor.pid --Log 'notice file /var/log/tor-stock.log'")

    def reconnect(self) -> Host:
        """Put the container back on its network; return the host record for its address."""
        self.network.connect(self.container)  # type: ignore[attr-defined]
        self.container.reload()  # type: ignore[attr-defined]
        nets = self.container.attrs["NetworkSettings"]["Networks"]  # type: ignore[attr-defined]
        address = nets[self.network.name]["IPAddress"]  # type: ignore[attr-defined]
        pub = (self.keydir / "host_key.pub").read_text().split()
        self.host.known_hosts.write_text(f"{address} {pub[0]} {pub[1]}\n")
        self.host = replace(self.host, address=address)
        _wait_sshd(self)
        return self.host

    def running_tor(self) -> str:
        """The executable of the running tor (resolved), or '' if none runs."""
        return self.sh("p=$(cat /run/tor/tor.pid 2>/dev/null) && readlink -f /proc/$p/exe").strip()


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kist-test", "-f", str(path)],
                   check=True)


@pytest.fixture
def relay_host() -> Iterator[RelayHost]:
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means no usable engine
        pytest.skip(f"no Docker engine: {exc}")
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen missing: run `kist-harness host setup` (openssh-client)")
    image = sshd_image()
    keydir = Path(tempfile.mkdtemp(prefix="kist-remote-"))
    network = container = None
    try:
        _keygen(keydir / "host_key")
        _keygen(keydir / "client_key")
        network = client.networks.create(f"kist-remote-{keydir.name[-8:]}", labels=LABEL)
        container = client.containers.create(image, labels=LABEL, network=network.name,
                                             name=f"kist-remote-{keydir.name[-8:]}")
        import io
        import tarfile

        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name, src, mode in (("ssh_host_ed25519_key", "host_key", 0o600),
                                    ("authorized_keys", "client_key.pub", 0o600)):
                data = (keydir / src).read_bytes()
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), mode
                tar.addfile(info, io.BytesIO(data))
            torrc = STOCK_TORRC.encode()
            info = tarfile.TarInfo("torrc")
            info.size = len(torrc)
            tar.addfile(info, io.BytesIO(torrc))
        container.put_archive("/etc/ssh/kist", buf.getvalue())
        container.start()
        container.reload()
        container.exec_run(["sh", "-c", "cp /etc/ssh/kist/torrc /etc/tor/torrc"])
        address = container.attrs["NetworkSettings"]["Networks"][network.name]["IPAddress"]
        pub = (keydir / "host_key.pub").read_text().split()
        (keydir / "known_hosts").write_text(f"{address} {pub[0]} {pub[1]}\n")
        host = Host(name="relay1", address=address, key=keydir / "client_key",
                    known_hosts=keydir / "known_hosts", run=RunMode.PROCESS,
                    pid_file=PurePosixPath("/run/tor/tor.pid"), control_port=24051,
                    data_dir=PurePosixPath("/var/lib/kist-tor"),
                    require_bootstrap=False, connect_timeout_s=10, command_timeout_s=60,
                    verify_timeout_s=30)
        rh = RelayHost(container, network, host, keydir)
        _wait_sshd(rh)
        rh.start_stock_tor()
        yield rh
    finally:
        if container is not None:
            container.remove(force=True)
        if network is not None:
            network.remove()
        shutil.rmtree(keydir, ignore_errors=True)


def _wait_sshd(rh: RelayHost, timeout_s: float = 20.0) -> None:
    import socket

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((rh.host.address, 22), timeout=1) as s:
                if s.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.2)
    logs = rh.container.logs(tail=20).decode(errors="replace")  # type: ignore[attr-defined]
    raise RuntimeError(f"sshd did not answer within {timeout_s} s; last log lines:\n{logs}")


def with_changes(host: Host, **kw: object) -> Host:
    return replace(host, **kw)  # type: ignore[arg-type]
