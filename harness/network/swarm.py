"""Swarm backend: every node a one-replica Swarm service on an attachable overlay network.

The Docker backend's parts are reused (images, readiness, shaping by `exec` in the node's
container, label-based removal); what differs is the order. Swarm gives a service no fixed
address, and every torrc names the authorities' addresses, so the services are created
first (in `make_layout`), each task waiting for a go file in the bind-mounted run directory,
and the layout is read back from the addresses the swarm gave the tasks; `prepare` then
writes keys and torrcs for those addresses and `start` says go. The host reaches a task's
control and SOCKS ports on the task's docker_gwbridge address (the overlay lives in its
own namespace), so `start` adds a ControlPort (and SocksPort) line on that address to the
node's torrc before go.

A node of the swarm other than this engine needs the node image: it is copied with
`docker save | docker load` through that node's engine API, named by the node label
``kist-harness.engine=tcp://ADDR:PORT`` (no registry). Every service, task container,
network, secret and config carries the run's labels; teardown removes them by label, and
`swarmmode` leaves a swarm the harness created.
"""

from __future__ import annotations

import contextlib
import importlib
import ipaddress
import logging
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from harness.config import Binary, Network, Role
from harness.errors import InputError, StepError
from harness.network import docker as docker_mod
from harness.network import images, linkapply, linkemu, netns, swarmmode
from harness.network.docker import OWNER, OWNER_LABEL, PORTS, RUN_LABEL, DockerBackend, _sdk
from harness.network.keys import Keys
from harness.network.layout import Layout, all_names
from harness.network.running import NodeInfo, RunningNetwork, ServerInfo, ShapingInForce
from harness.proc import run
from harness.signals import raise_if_stopped

log = logging.getLogger(__name__)

GO_FILE = "swarm-go"
PLACE_TIMEOUT_S = 120.0       # every task placed, its container running the wait loop
REMOVE_TIMEOUT_S = 60.0
SERVICE_LABEL = "com.docker.swarm.service.name"
# A task waits for the go file, then runs its command in its node directory.
WAIT = 'until [ -e "$0" ]; do sleep 0.1; done; cd "$1" && shift && exec "$@"'


class SwarmBackend(DockerBackend):
    name = "swarm"

    def __init__(self) -> None:
        super().__init__()
        self._run_id = ""
        self._image = ""
        self._net_name = ""
        self._gw_ips: dict[str, str] = {}
        self._tasks: dict[str, Any] = {}   # node name -> its task's container
        self._engines: dict[str, Any] = {}  # swarm node id -> that node's engine client
        self._line_handles: list[linkemu.DelayLineHandle] = []  # [links]: one delay line per task namespace

    def begin(self, run_id: str, binaries: Mapping[Binary, Path]) -> None:
        self._run_id = run_id
        self._run_label = f"{RUN_LABEL}={run_id}"
        self._image = images.ensure_node(binaries.get(Binary.PATCHED))

    def make_layout(self, net: Network, run_dir: Path) -> Layout:
        if not self._run_id:
            raise StepError("the Swarm backend needs begin(run_id, binaries) before make_layout")
        try:
            return self._make_layout(net, run_dir)
        except _sdk().errors.DockerException as exc:
            raise StepError(f"Docker Swarm refused a step of starting network {net.name}: {exc}") from exc

    def _make_layout(self, net: Network, run_dir: Path) -> Layout:
        placement = {n.name: n.placement for n in net.nodes} | {s.name: s.placement for s in net.fileservers}
        # checked before `swarm init`, against the one node such a swarm would have
        swarmmode.check_placement(net.source, placement, swarmmode.nodes_or_self(self.client))
        swarmmode.ensure(self.client)
        nodes = swarmmode.nodes(self.client)
        self._distribute(nodes)
        labels = {OWNER_LABEL: OWNER, RUN_LABEL: self._run_id}
        self._net_name = f"kist-{self._run_id}"
        self._subnet = docker_mod._free_subnet(self.client)
        types = importlib.import_module("docker.types")
        ipam = types.IPAMConfig(pool_configs=[types.IPAMPool(subnet=str(self._subnet),
                                                             gateway=str(next(iter(self._subnet.hosts()))))])
        self.client.networks.create(self._net_name, driver="overlay", attachable=True, ipam=ipam, labels=labels)
        in_image = {Binary.PATCHED: images.PATCHED_IN_IMAGE, Binary.STOCK: images.STOCK_IN_IMAGE}
        p = PORTS
        node_dir = Layout(run_dir, p, ()).node_dir
        # a file server binds every address of its task (its overlay one is not known yet)
        jobs: dict[str, list[str]] = {s.name: ["python3", images.TRAFFIC_IN_IMAGE, "serve", "--bind", "0.0.0.0",
                                               "--port", str(p.http_port)] for s in net.fileservers}
        jobs.update({n.name: [in_image[n.binary], "-f", str(node_dir(n.name) / "torrc")] for n in net.nodes})
        go = str(run_dir / GO_FILE)

        def create(name: str, argv: list[str]) -> None:
            self.client.services.create(
                self._image, ["sh", "-c", WAIT, go, str(node_dir(name)), *argv],
                name=f"kist-{self._run_id}-{name}", hostname=name, labels=labels, container_labels=labels,
                mounts=[types.Mount(target=str(run_dir), source=str(run_dir), type="bind")],
                networks=[types.NetworkAttachmentConfig(self._net_name, aliases=[name])],
                endpoint_spec=types.EndpointSpec(mode="dnsrr"),  # no VIP: a node is one task
                restart_policy=types.RestartPolicy(condition="none"),  # a dead tor stays dead, as under Docker
                constraints=list(placement[name]) or None, cap_add=["NET_ADMIN"],
                stop_grace_period=docker_mod.STOP_TIMEOUT_S * 10**9)

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda kv: create(*kv), jobs.items()))
        ips = self._wait_placed(all_names(net))
        log.info("swarm: %d services placed on %s (%s, image %s)", len(ips), self._net_name, self._subnet,
                 self._image)
        return Layout(run_dir, p, tuple((n, ips[n]) for n in all_names(net)))

    def _distribute(self, nodes: list[swarmmode.SwarmNode]) -> None:
        """The node image on every ready node: here already; elsewhere loaded through its engine."""
        me = swarmmode.state(self.client)["NodeID"]
        local = self.client.images.get(self._image)
        for node in nodes:
            if node.id == me or not node.ready:
                continue
            url = node.labels.get(swarmmode.ENGINE_LABEL)
            if not url:
                raise InputError(f"--backend swarm: node {node.describe()} of the swarm has no label "
                                 f"{swarmmode.ENGINE_LABEL}=tcp://ADDR:PORT naming its engine's API, so the node "
                                 f"image {self._image} cannot be loaded there (no registry is used); add it "
                                 f"(`docker node update --label-add {swarmmode.ENGINE_LABEL}=tcp://...` "
                                 "on a manager) or drain that node")
            remote = _sdk().DockerClient(base_url=url, timeout=600)
            try:
                if any(i.id == local.id for i in remote.images.list(name=self._image.split(":")[0])):
                    continue
                t0 = time.monotonic()
                remote.api.load_image(local.save(named=True))
                log.info("swarm: loaded %s on %s in %.1f s", self._image, node.hostname, time.monotonic() - t0)
            finally:
                remote.close()

    def _wait_placed(self, names: list[str]) -> dict[str, str]:
        """Each node's overlay address, once its task's container runs (the wait loop)."""
        deadline = time.monotonic() + PLACE_TIMEOUT_S
        ips: dict[str, str] = {}
        while True:
            raise_if_stopped()
            problems = []
            for name in names:
                if name in ips:
                    continue
                task = self._task(name)
                st = (task or {}).get("Status") or {}
                if st.get("State") == "running":
                    ips[name] = self._overlay_ip(task or {})
                elif st.get("State") in ("failed", "rejected", "complete", "shutdown", "orphaned"):
                    raise StepError(f"swarm task of node {name} ended before it started: {st.get('State')} "
                                    f"({st.get('Err') or st.get('Message') or 'no message'})")
                else:
                    problems.append(f"{name}: {st.get('State', 'not scheduled')} "
                                    f"({st.get('Err') or st.get('Message') or 'waiting'})")
            if not problems:
                return ips
            if time.monotonic() > deadline:
                raise StepError(f"swarm tasks not running after {PLACE_TIMEOUT_S:.0f} s: {'; '.join(problems[:5])}"
                                " (no node can run them? `docker service ps` tells why)")
            time.sleep(0.3)

    def _service_name(self, name: str) -> str:
        return f"kist-{self._run_id}-{name}"

    def _task(self, name: str) -> Mapping[str, Any] | None:
        return _latest(self.client.services.get(self._service_name(name)).tasks())

    def _overlay_ip(self, task: Mapping[str, Any]) -> str:
        for att in task.get("NetworksAttachments") or []:
            if (att.get("Network") or {}).get("Spec", {}).get("Name") == self._net_name:
                return str(ipaddress.ip_interface(att["Addresses"][0]).ip)
        raise StepError(f"swarm task {task.get('ID')} has no address on {self._net_name}")

    def _engine(self, node_id: str) -> Any:
        """The engine API of a swarm node: this one, or the URL in its kist-harness.engine label."""
        if node_id == swarmmode.state(self.client)["NodeID"]:
            return self.client
        if node_id not in self._engines:
            url = (self.client.nodes.get(node_id).attrs["Spec"].get("Labels") or {}).get(swarmmode.ENGINE_LABEL)
            if not url:
                raise StepError(f"swarm node {node_id} has no {swarmmode.ENGINE_LABEL} label; its tasks "
                                "cannot be reached from here")
            self._engines[node_id] = _sdk().DockerClient(base_url=url, timeout=60)
        return self._engines[node_id]

    def _task_container(self, name: str) -> Any:
        """The container of a node's task, through the engine of the swarm node it runs on."""
        return self._container_of(self._service_name(name))

    def _container_of(self, service: str) -> Any:
        task = _latest(self.client.services.get(service).tasks()) or {}
        cid = ((task.get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID")
        if not cid:
            raise StepError(f"swarm service {service} has no task container")
        return self._engine(str(task.get("NodeID"))).containers.get(cid)

    def _container(self, name: str) -> Any:
        """Shaping's way in (DockerBackend._exec_shaping): a task container's name is
        SERVICE.SLOT.TASK, so its service finds it on whichever node it runs."""
        return self._container_of(name.split(".", 1)[0])

    def _gw_ip(self, cont: Any) -> str:
        """The container's docker_gwbridge address: the one the host can route to (a task on
        another node: through a route to that node's docker_gwbridge, see docs/swarm.md)."""
        gw = cont.client.networks.get("docker_gwbridge")
        subnets = [ipaddress.ip_network(c["Subnet"]) for c in (gw.attrs.get("IPAM") or {}).get("Config") or []]
        code, out = cont.exec_run(["ip", "-4", "-o", "addr", "show"])
        for line in out.decode(errors="replace").splitlines():
            parts = line.split()
            if code == 0 and "inet" in parts:
                ip = ipaddress.ip_interface(parts[parts.index("inet") + 1]).ip
                if any(ip in s for s in subnets):
                    return str(ip)
        raise StepError(f"container {cont.name} has no docker_gwbridge address ({out.decode(errors='replace')[-300:]})")

    def start(self, net: Network, layout: Layout, keys: Mapping[str, Keys], binaries: Mapping[Binary, Path],
              run_id: str, shaping: tuple[ShapingInForce, ...]) -> RunningNetwork:
        try:
            return self._go(net, layout, keys, shaping)
        except _sdk().errors.DockerException as exc:
            raise StepError(f"Docker Swarm refused a step of starting network {net.name}: {exc}") from exc

    def _go(self, net: Network, layout: Layout, keys: Mapping[str, Keys],
            shaping: tuple[ShapingInForce, ...]) -> RunningNetwork:
        p = layout.ports
        self._tasks = {name: self._task_container(name) for name in all_names(net)}
        names = {name: str(c.name) for name, c in self._tasks.items()}
        for n in net.nodes:
            gw = self._gw_ip(self._tasks[n.name])
            self._gw_ips[n.name] = gw
            extra = ["", "# --backend swarm: the host reaches this node on its docker_gwbridge address.",
                     f"ControlPort {gw}:{p.control_port}"]
            if n.role is Role.CLIENT:
                extra.append(f"SocksPort {gw}:{p.socks_port}")
            with layout.torrc(n.name).open("a") as fh:
                fh.write("\n".join(extra) + "\n")
        for sh in shaping:
            self._apply_shaping(names[sh.node], sh)
        self._start_links(net, layout)  # before go: bootstrap runs over the links too
        (layout.run_dir / GO_FILE).touch()
        nodes = tuple(NodeInfo(
            n.name, n.role, self._gw_ips[n.name], p.control_port, layout.data_dir(n.name) / "control_auth_cookie",
            layout.data_dir(n.name), layout.log_file(n.name), keys[n.name].fingerprint, n.scheduler, n.binary,
            socks=(self._gw_ips[n.name], p.socks_port) if n.role is Role.CLIENT else None,
            container=names[n.name]) for n in net.nodes)
        servers = tuple(ServerInfo(s.name, layout.ip(s.name), p.http_port, container=names[s.name])
                        for s in net.fileservers)
        log.info("swarm: go for %d services on %s", len(names), self._net_name)
        return RunningNetwork(net.name, self._run_id, self.name, layout.run_dir, net.source, nodes, servers,
                              shaping, docker_network=self._net_name)

    def _start_links(self, net: Network, layout: Layout) -> None:
        """[links] in each task's namespace, entered from this host (see netns and linkapply).

        Only a task whose container runs on this machine's kernel can be entered: the local
        engine's, or a worker engine's in a container here. A task on another host makes
        links impossible: an optional [links] is then skipped and recorded, a required one
        fails the step naming the node.
        """
        plan = self._links_plan
        if plan is None or plan.mechanism == "none":
            return
        spaces: dict[str, tuple[str, ...]] = {}
        elsewhere = []
        for name, ip in layout.ips:
            cont = self._tasks[name]
            cont.reload()
            pid = netns.find(int(cont.attrs["State"]["Pid"]), ip)
            if pid is None:
                elsewhere.append(name)
            else:
                spaces[name] = netns.prefix(pid)
        if elsewhere:
            why = (f"the tasks of {', '.join(elsewhere)} do not run on this machine's kernel, and the Swarm "
                   "backend's delay lines run in each task's network namespace, entered from here")
            model = getattr(net, "links", None)
            if model is not None and model.optional:
                self._links_plan = linkapply.skip_in_force(layout.run_dir, plan, why)
                return
            raise StepError(f"scenario {net.source}, [links]: {why}; place every node on this machine "
                            "(placement constraints), or set optional = true in [links] to run with plain links")
        settings = [f"{key}={value}" for key, value in linkapply.sysctls(plan).items()]
        if settings:   # the same sysctls the Docker backend gives each container; before tor starts
            for name, prefix in spaces.items():
                self._run_in(prefix, ["sysctl", "-q", "-w", *settings], name)
        self._line_handles = linkapply.start_per_node(net, layout, self._run_id, plan, str(self._subnet), spaces)

    @staticmethod
    def _run_in(prefix: tuple[str, ...], argv: list[str], node: str) -> None:
        res = run([*prefix, *argv], check=False, timeout=20)
        if not res.ok:
            raise StepError(f"links on {node}: `{' '.join(argv)}` failed in its namespace: {res.tail(3)}")

    def dead(self, running: RunningNetwork) -> list[str]:
        services = {svc.name: svc for svc in self.client.services.list(filters={"label": f"{RUN_LABEL}={running.run_id}"})}
        out = []
        for name in [n.name for n in running.nodes] + [s.name for s in running.servers]:
            svc = services.get(f"kist-{running.run_id}-{name}")
            if svc is None or ((_latest(svc.tasks()) or {}).get("Status") or {}).get("State") != "running":
                out.append(name)
        return out + linkemu.dead_lines(running.run_dir)

    def stop(self) -> None:
        for h in self._line_handles:   # rules and lines first, then the services
            linkemu.stop(h)
        self._line_handles = []
        for engine in self._engines.values():
            engine.close()
        self._engines.clear()
        super().stop()

    @staticmethod
    def remove_by_label(client: Any, label: str) -> list[str]:
        return remove(client, label)


def _latest(tasks: list[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """A one-replica service's current task (with restarts off there is one; be safe anyway)."""
    return max(tasks, key=lambda t: str(t.get("CreatedAt", "")), default=None)


def remove(client: Any, label: str) -> list[str]:
    """Every service, task container (on every node whose engine is known), network, secret and
    config with the label; then the swarm itself if the harness created it and no run is left."""
    errors = _sdk().errors
    done = []
    manager = bool(swarmmode.state(client).get("ControlAvailable"))
    engines = [client]
    if manager:
        for svc in client.services.list(filters={"label": label}):
            with contextlib.suppress(errors.NotFound):
                svc.remove()
                done.append(f"removed service {svc.name}")
        engines += _other_engines(client)
    deadline = time.monotonic() + REMOVE_TIMEOUT_S
    try:
        for engine in engines:  # the swarm stops the tasks on every node; here we also wait for that
            done += docker_mod._remove_containers(engine, label)
            while engine.containers.list(all=True, filters={"label": label}) and time.monotonic() < deadline:
                time.sleep(0.3)
                docker_mod._remove_containers(engine, label)
        if manager:
            for kind in (client.secrets, client.configs):
                for obj in kind.list(filters={"label": label}):
                    with contextlib.suppress(errors.NotFound):
                        obj.remove()
                        done.append(f"removed {type(obj).__name__.lower()} {obj.name}")
        done += _remove_networks(client, label, deadline)
        for engine in engines[1:]:  # a worker drops its copy of the overlay once its tasks are gone
            while engine.networks.list(filters={"label": label}) and time.monotonic() < deadline:
                time.sleep(0.3)
    finally:
        for engine in engines[1:]:
            engine.close()
    done += docker_mod._remove(client, label)  # anything else labelled (volumes)
    done += swarmmode.leave_if_created(client)
    return done


def _other_engines(client: Any) -> list[Any]:
    """Engine clients of the swarm's other nodes that carry a kist-harness.engine label."""
    me = swarmmode.state(client).get("NodeID")
    out = []
    for node in swarmmode.nodes(client):
        url = node.labels.get(swarmmode.ENGINE_LABEL)
        if node.id == me or not url:
            continue
        try:
            engine = _sdk().DockerClient(base_url=url, timeout=30)
            engine.ping()
            out.append(engine)
        except _sdk().errors.DockerException as exc:
            log.warning("swarm node %s (%s) not reachable for cleanup: %s", node.hostname, url, exc)
    return out


def _remove_networks(client: Any, label: str, deadline: float) -> list[str]:
    """The overlay goes once the swarm has released the tasks' endpoints (a moment after removal)."""
    errors = _sdk().errors
    done = []
    while True:
        left = client.networks.list(filters={"label": label})
        for net in left:
            try:
                net.remove()
                done.append(f"removed network {net.name}")
            except errors.NotFound:
                pass
            except errors.APIError as exc:
                if time.monotonic() > deadline:
                    log.warning("could not remove network %s: %s", net.name, exc)
                    return done
        if not left or not client.networks.list(filters={"label": label}):
            return done
        time.sleep(0.3)


def remove_labelled() -> list[str]:
    """Every Swarm object of any kist-harness network run (`net down --force`)."""
    return remove(docker_mod._client(), f"{OWNER_LABEL}={OWNER}")


def leftovers(run_id: str | None = None) -> list[str]:
    """Services, networks, secrets and configs still labelled for one run (or any): tests assert none."""
    c = docker_mod._client()
    flt = {"label": f"{RUN_LABEL}={run_id}" if run_id else f"{OWNER_LABEL}={OWNER}"}
    out = docker_mod.leftovers(run_id)
    if swarmmode.state(c).get("ControlAvailable"):
        out += [x.name for x in c.services.list(filters=flt)]
        out += [x.name for x in c.secrets.list(filters=flt)] + [x.name for x in c.configs.list(filters=flt)]
    return out
