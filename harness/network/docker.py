"""Docker backend: one container per node on a private bridge network with fixed IPs.

The run directory is bind-mounted at the same path inside every container, so torrcs,
cookies and logs have one path for host and container alike. The host reaches each
control port at the container's IP on the bridge (no published ports, no port clashes).
Every object carries `kist-harness.owner=network` and `kist-harness.run=<run id>`;
teardown removes by label, so it also works after a crash, a killed node or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import importlib
import ipaddress
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from harness.config import Binary, Network, Role
from harness.errors import StepError
from harness.network import images, linkapply, linkemu
from harness.network import shaping as shaping_mod
from harness.network.backend import Backend
from harness.network.keys import Keys
from harness.network.layout import Layout, Ports, all_names
from harness.network.running import NodeInfo, RunningNetwork, ServerInfo, ShapingInForce
from harness.proc import run

log = logging.getLogger(__name__)

OWNER_LABEL = images.OWNER_LABEL
OWNER = images.OWNER
RUN_LABEL = "kist-harness.run"
PORTS = Ports(21000)            # inside containers; every node has its own IP
SUBNET_POOL = ipaddress.ip_network("10.200.0.0/16")   # /24s handed out from here
STOP_TIMEOUT_S = 2


def _sdk() -> Any:
    """The Docker SDK, imported when first needed (by name: the repo's docker/ recipe
    directory would shadow it for static checkers)."""
    return importlib.import_module("docker")


def _client() -> Any:
    sdk = _sdk()
    try:
        c = sdk.from_env(timeout=60)
        c.ping()
    except sdk.errors.DockerException as exc:
        raise StepError(f"cannot reach the Docker engine ({exc}); run `kist-harness host setup` as root "
                        "or use --backend local") from exc
    return c


def _used_subnets(client: Any) -> list[ipaddress.IPv4Network]:
    used = []
    for net in client.networks.list():
        for cfg in (net.attrs.get("IPAM") or {}).get("Config") or []:
            try:
                used.append(ipaddress.ip_network(cfg["Subnet"]))
            except (KeyError, ValueError):
                continue
    for line in run(["ip", "-4", "route", "show"], check=False).stdout.splitlines():
        try:
            used.append(ipaddress.ip_network(line.split()[0]))
        except (ValueError, IndexError):
            continue
    return [u for u in used if isinstance(u, ipaddress.IPv4Network)]


def _free_subnet(client: Any) -> ipaddress.IPv4Network:
    used = _used_subnets(client)
    for sub in SUBNET_POOL.subnets(new_prefix=24):
        if isinstance(sub, ipaddress.IPv4Network) and not any(sub.overlaps(u) for u in used):
            return sub
    raise StepError(f"no free /24 left in {SUBNET_POOL} for a Docker network; remove old ones "
                    "(kist-harness net down --force)")


def _remove_containers(client: Any, label: str) -> list[str]:
    NotFound = _sdk().errors.NotFound  # noqa: N806
    containers = client.containers.list(all=True, filters={"label": label})

    def rm(c: Any) -> str:
        with contextlib.suppress(NotFound):
            c.remove(force=True, v=True)
        return f"removed container {c.name}"

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(rm, containers))


def _remove(client: Any, label: str) -> list[str]:
    errors = _sdk().errors
    APIError, NotFound = errors.APIError, errors.NotFound  # noqa: N806

    done = _remove_containers(client, label)
    for net in client.networks.list(filters={"label": label}):
        try:
            net.remove()
            done.append(f"removed network {net.name}")
        except (NotFound, APIError) as exc:
            log.warning("could not remove network %s: %s", net.name, exc)
    for vol in client.volumes.list(filters={"label": label}):
        try:
            vol.remove(force=True)
            done.append(f"removed volume {vol.name}")
        except (NotFound, APIError) as exc:
            log.warning("could not remove volume %s: %s", vol.name, exc)
    return done


def remove_labelled() -> list[str]:
    """Every container, network and volume of any kist-harness network run (`net down --force`)."""
    return _remove(_client(), f"{OWNER_LABEL}={OWNER}")


def leftovers(run_id: str | None = None) -> list[str]:
    """Names of containers/networks/volumes still labelled for one run (or any run): tests assert none."""
    c = _client()
    flt = {"label": f"{RUN_LABEL}={run_id}" if run_id else f"{OWNER_LABEL}={OWNER}"}
    return ([x.name for x in c.containers.list(all=True, filters=flt)]
            + [x.name for x in c.networks.list(filters=flt)]
            + [x.name for x in c.volumes.list(filters=flt)])


class DockerBackend(Backend):
    name = "docker"

    def __init__(self, containers: Callable[[str], Any] | None = None) -> None:
        """containers: looks a container up by name (default: the engine's); tests pass
        stand-ins that record each exec."""
        self._client: Any = None
        self._run_label = ""
        self._containers = containers
        self._links_plan: linkapply.LinksPlan | None = None
        self._links: linkemu.DelayLineHandle | None = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = _client()
        return self._client

    def make_layout(self, net: Network, run_dir: Path) -> Layout:
        names = all_names(net)
        self._subnet = _free_subnet(self.client)
        hosts = list(self._subnet.hosts())[1:]  # .1 is the bridge gateway
        return Layout(run_dir, PORTS, tuple((n, str(hosts[i])) for i, n in enumerate(names)))

    def plan_shaping(self, net: Network) -> tuple[ShapingInForce, ...]:
        self._links_plan = linkapply.check(net, self.name)  # [links]: refused here if the host cannot
        wanted = [(n.name, n.shaping) for n in net.nodes] + [(s.name, s.shaping) for s in net.fileservers]
        wanted = [(name, s) for name, s in wanted if s.requested]
        if not wanted:
            return ()
        caps = shaping_mod.detect()
        return tuple(shaping_mod.plan(name, s, caps, net.source) for name, s in wanted)

    def start(self, net: Network, layout: Layout, keys: Mapping[str, Keys], binaries: Mapping[Binary, Path],
              run_id: str, shaping: tuple[ShapingInForce, ...]) -> RunningNetwork:
        try:
            return self._start(net, layout, keys, binaries, run_id, shaping)
        except _sdk().errors.DockerException as exc:
            raise StepError(f"Docker refused a step of starting network {net.name}: {exc}") from exc

    def _start(self, net: Network, layout: Layout, keys: Mapping[str, Keys], binaries: Mapping[Binary, Path],
               run_id: str, shaping: tuple[ShapingInForce, ...]) -> RunningNetwork:
        image = images.ensure_node(binaries.get(Binary.PATCHED))
        self._run_label = f"{RUN_LABEL}={run_id}"
        labels = {OWNER_LABEL: OWNER, RUN_LABEL: run_id}
        net_name = f"kist-{run_id}"
        gateway = str(next(iter(self._subnet.hosts())))
        types = importlib.import_module("docker.types")
        ipam = types.IPAMConfig(pool_configs=[types.IPAMPool(subnet=str(self._subnet), gateway=gateway)])
        dnet = self.client.networks.create(net_name, driver="bridge", ipam=ipam, labels=labels)
        self._links = linkapply.start_docker(net, layout, run_id, self._links_plan, f"br-{dnet.id[:12]}")
        in_image = {Binary.PATCHED: images.PATCHED_IN_IMAGE, Binary.STOCK: images.STOCK_IN_IMAGE}
        p = layout.ports

        def launch(name: str, command: list[str]) -> str:
            cont = self.client.containers.run(
                image, command, name=f"kist-{run_id}-{name}", hostname=name, detach=True, labels=labels,
                cap_add=["NET_ADMIN"],  # tc and iptables inside the node's own namespace
                sysctls=linkapply.sysctls(self._links_plan) or None,  # [links] congestion = ...
                volumes={str(layout.run_dir): {"bind": str(layout.run_dir), "mode": "rw"}},
                network=net_name,
                networking_config={net_name: self.client.api.create_endpoint_config(
                    ipv4_address=layout.ip(name))},
                working_dir=str(layout.node_dir(name)))
            return str(cont.name)

        jobs = {s.name: ["python3", images.TRAFFIC_IN_IMAGE, "serve", "--bind", layout.ip(s.name),
                         "--port", str(p.http_port)] for s in net.fileservers}
        jobs.update({n.name: [in_image[n.binary], "-f", str(layout.torrc(n.name))] for n in net.nodes})
        with ThreadPoolExecutor(max_workers=12) as pool:  # dockerd does the waiting
            futures = {name: pool.submit(launch, name, cmd) for name, cmd in jobs.items()}
            names = {name: f.result() for name, f in futures.items()}
        for sh in shaping:
            self._apply_shaping(names[sh.node], sh)
        nodes = tuple(NodeInfo(
            n.name, n.role, layout.ip(n.name), p.control_port, layout.data_dir(n.name) / "control_auth_cookie",
            layout.data_dir(n.name), layout.log_file(n.name), keys[n.name].fingerprint, n.scheduler, n.binary,
            socks=(layout.ip(n.name), p.socks_port) if n.role is Role.CLIENT else None,
            container=names[n.name]) for n in net.nodes)
        servers = tuple(ServerInfo(s.name, layout.ip(s.name), p.http_port, container=names[s.name])
                        for s in net.fileservers)
        log.info("started %d containers on %s (%s, image %s)", len(names), net_name, self._subnet, image)
        return RunningNetwork(net.name, run_id, self.name, layout.run_dir, net.source, nodes, servers,
                              shaping, docker_network=net_name)

    def _container(self, name: str) -> Any:
        return (self._containers or self.client.containers.get)(name)

    def _exec_shaping(self, container: str, node: str, argvs: list[list[str]]) -> None:
        cont = self._container(container)
        for argv in argvs:
            code, out = cont.exec_run(argv)
            if code != 0 and argv not in shaping_mod.RESET:  # a reset of what is not there fails harmlessly
                raise StepError(f"shaping {node} failed: `{' '.join(argv)}` exited {code} in {container}:\n"
                                f"{out.decode(errors='replace')[-1500:]}")

    def _apply_shaping(self, container: str, sh: ShapingInForce) -> None:
        self._exec_shaping(container, sh.node, shaping_mod.commands(sh))
        log.info("%s: shaping in force: rate %s Mbit/s, loss %s%%, latency %s ms", sh.node, sh.rate_mbit,
                 sh.loss_percent, sh.latency_ms)

    def reshape(self, running: RunningNetwork, node: NodeInfo, shaping: ShapingInForce | None) -> None:
        if not node.container:
            raise StepError(f"{node.name} of network {running.name} has no container to shape")
        self._exec_shaping(node.container, node.name,
                           [*shaping_mod.RESET, *(shaping_mod.commands(shaping) if shaping is not None else [])])

    def dead(self, running: RunningNetwork) -> list[str]:
        flt = {"label": f"{RUN_LABEL}={running.run_id}"}
        status = {c.name: c.status for c in self.client.containers.list(all=True, filters=flt)}
        members = [(n.name, n.container) for n in running.nodes] + [(s.name, s.container) for s in running.servers]
        return [name for name, cont in members if cont and status.get(cont) != "running"] + \
            linkemu.dead_lines(running.run_dir)

    # removes every object of the engine with a label; the Swarm backend's also removes services
    remove_by_label = staticmethod(_remove)

    def stop(self) -> None:
        if self._links is not None:
            linkemu.stop(self._links)
            self._links = None
        if self._run_label and self._client is not None:
            self.remove_by_label(self._client, self._run_label)

    @classmethod
    def teardown(cls, running: RunningNetwork) -> list[str]:
        return linkemu.stop_all(running.run_dir) + cls.remove_by_label(_client(), f"{RUN_LABEL}={running.run_id}")
