"""A two-node swarm on one machine: this engine as manager, a second engine in a container as worker.

What the Swarm backend's two-node test and figures run on. The worker is the project's base
image plus docker.io (`images.ensure_swarm_worker`), run with every capability this host
grants (--privileged where it grants all; a sandboxed host may withhold some), the host's
/tmp bind-mounted at /tmp (the run directory is the shared filesystem a real cluster would
have), and its engine API on TCP inside the default bridge. Before it joins, its
docker_gwbridge gets a subnet of its own, and the host routes that subnet to the worker's
address, so the host reaches the control ports of tasks placed there as it reaches local
ones. The worker node is labelled ``kist-harness.engine=tcp://ADDR:2375`` (image loading,
exec) and ``zone=b`` (placement). Everything is undone on exit, in reverse, whatever happened;
the context manager refuses an engine that is already in a swarm (a swarm it did not make
is not its to reshape).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from harness.errors import InputError, StepError
from harness.network import images, swarmmode
from harness.network.docker import _client, _sdk, _used_subnets
from harness.proc import run

log = logging.getLogger(__name__)

NAME = "kist-swarm-worker"
HOSTNAME = "kist-worker"
ZONE = "b"
API_PORT = 2375
READY_TIMEOUT_S = 60.0
CAPS = (  # capability numbers 0..40, in order (linux/capability.h)
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
    "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
    "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
    "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
    "CHECKPOINT_RESTORE",
)


@dataclass(frozen=True)
class TwoNodeSwarm:
    manager_addr: str
    worker_addr: str
    worker_engine: str     # tcp://ADDR:2375
    worker_gwbridge: str   # the subnet routed to the worker


def _missing_caps() -> list[str]:
    """Capabilities this process's bounding set lacks (a container cannot be given them)."""
    for line in open("/proc/self/status").read().splitlines():  # noqa: SIM115 (one small read)
        if line.startswith("CapBnd:"):
            bnd = int(line.split()[1], 16)
            return [name for i, name in enumerate(CAPS) if not bnd >> i & 1]
    return []


def _wait_engine(url: str) -> Any:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        try:
            c = _sdk().DockerClient(base_url=url, timeout=30)
            c.ping()
            return c
        except _sdk().errors.DockerException as exc:
            if time.monotonic() > deadline:
                raise StepError(f"the worker engine at {url} did not answer in {READY_TIMEOUT_S:.0f} s: {exc}") from exc
            time.sleep(0.5)


def _free_subnet(client: Any) -> ipaddress.IPv4Network:
    used = _used_subnets(client)
    for net in ipaddress.ip_network("10.198.0.0/16").subnets(new_prefix=24):
        if isinstance(net, ipaddress.IPv4Network) and not any(net.overlaps(u) for u in used):
            return net
    raise StepError("no free /24 in 10.198.0.0/16 for the worker's docker_gwbridge")


@contextlib.contextmanager
def two_node_swarm(labels: dict[str, str] | None = None) -> Iterator[TwoNodeSwarm]:
    """This engine initialises a swarm; a worker engine in a container joins it; all undone after."""
    client = _client()
    if swarmmode.state(client).get("LocalNodeState") != "inactive":
        raise InputError("a two-node test swarm needs this engine in no swarm (it initialises one and leaves it "
                         "afterwards); leave the current swarm first or run the single-node tests only")
    labels = {images.OWNER_LABEL: images.OWNER, **(labels or {})}
    image = images.ensure_swarm_worker()
    had_gwbridge = bool(client.networks.list(names=["docker_gwbridge"]))
    with contextlib.ExitStack() as undo:
        vol = client.volumes.create(f"{NAME}-lib", labels=labels)  # overlay2 needs a real filesystem under it
        undo.callback(lambda: vol.remove(force=True))
        missing = _missing_caps()
        binds = {"/tmp": {"bind": "/tmp", "mode": "rw"}, vol.name: {"bind": "/var/lib/docker", "mode": "rw"},
                 **({"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"}} if missing else {})}
        host_config = client.api.create_host_config(
            binds=binds, privileged=not missing, cap_add=["ALL"] if missing else None, cap_drop=missing or None,
            security_opt=["seccomp=unconfined", "apparmor=unconfined"] if missing else None)
        if missing:  # what the CLI's --security-opt systempaths=unconfined sets: /proc/sys writable
            host_config.update({"MaskedPaths": [], "ReadonlyPaths": []})
        created = client.api.create_container(image, name=NAME, hostname=HOSTNAME, labels=labels,
                                              host_config=host_config, volumes=[b["bind"] for b in binds.values()])
        cont = client.containers.get(created["Id"])
        undo.callback(lambda: cont.remove(force=True, v=True))
        cont.start()
        cont.reload()
        worker_addr = cont.attrs["NetworkSettings"]["IPAddress"]
        manager_addr = cont.attrs["NetworkSettings"]["Gateway"]
        url = f"tcp://{worker_addr}:{API_PORT}"
        worker = _wait_engine(url)
        undo.callback(worker.close)
        gw_subnet = _free_subnet(client)
        worker.networks.create("docker_gwbridge", driver="bridge", options={
            "com.docker.network.bridge.name": "docker_gwbridge",
            "com.docker.network.bridge.enable_icc": "false",
            "com.docker.network.bridge.enable_ip_masquerade": "true"},
            ipam=_sdk().types.IPAMConfig(pool_configs=[_sdk().types.IPAMPool(subnet=str(gw_subnet))]))
        client.swarm.init(advertise_addr=manager_addr, listen_addr=f"{manager_addr}:2377",
                          default_addr_pool=[str(swarmmode._free_pool(client))], subnet_size=24)
        undo.callback(lambda: _leave(client, had_gwbridge))
        token = client.swarm.attrs["JoinTokens"]["Worker"]
        worker.swarm.join(remote_addrs=[f"{manager_addr}:2377"], join_token=token, advertise_addr=worker_addr)
        undo.callback(lambda: worker.swarm.leave(force=True))
        node = _wait_node(client, HOSTNAME)
        spec = dict(node.attrs["Spec"])
        spec["Labels"] = {**(spec.get("Labels") or {}), swarmmode.ENGINE_LABEL: url, "zone": ZONE}
        node.update(spec)
        run(["ip", "route", "add", str(gw_subnet), "via", worker_addr])
        undo.callback(lambda: run(["ip", "route", "del", str(gw_subnet), "via", worker_addr], check=False))
        code, out = cont.exec_run(["iptables", "-I", "DOCKER-USER", "-i", "eth0", "-o", "docker_gwbridge",
                                   "-j", "ACCEPT"])
        if code != 0:
            raise StepError(f"worker: iptables failed: {out.decode(errors='replace')[-300:]}")
        log.info("two-node swarm: manager %s, worker %s (%s, engine %s, docker_gwbridge %s routed)",
                 manager_addr, HOSTNAME, worker_addr, url, gw_subnet)
        yield TwoNodeSwarm(manager_addr, worker_addr, url, str(gw_subnet))


def _wait_node(client: Any, hostname: str) -> Any:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        for n in client.nodes.list():
            if n.attrs["Description"].get("Hostname") == hostname and n.attrs["Status"].get("State") == "ready":
                return n
        time.sleep(0.5)
    raise StepError(f"worker {hostname} did not become a ready swarm node in {READY_TIMEOUT_S:.0f} s")


def _leave(client: Any, had_gwbridge: bool) -> None:
    client.swarm.leave(force=True)
    if not had_gwbridge:
        swarmmode.remove_gwbridge(client)
