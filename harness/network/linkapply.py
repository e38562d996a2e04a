"""Put a scenario's `[links]` in force on a backend, and check beforehand that the host can.

`check` runs before anything starts (the backends call it from plan_shaping): a figure
the host cannot apply fails there with the field and what would make it work, unless the
scenario set ``optional = true`` in ``[links]``. `start_local` runs one delay line in the
host's namespace for the local backend (every node on its own 127.0.0.x): the run's ports
(ORPort, DirPort, the file servers' HTTP port; never the control port, so the collector's
events are not delayed) on lo go to the delay line, which looks each packet's address pair
up. What was in force is written to the run directory (links/in-force.json) and logged.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness import host
from harness.config import Network
from harness.errors import InputError, StepError
from harness.network import hostcaps, linkemu
from harness.network.layout import Layout
from harness.network.links import LinkModel, Mechanism, PathParams

log = logging.getLogger(__name__)

MARK_BASE = 0x4B480000   # packet marks of the local backend's nodes: MARK_BASE + the node's index
QUEUE_BASE = 3000   # NFQUEUE numbers of the local backend: QUEUE_BASE + the port block's index


@dataclass(frozen=True)
class LinksPlan:
    """What will be in force: the mechanism, the host's offer, every directed path."""

    mechanism: str               # "delayline", or "none" when skipped (optional and impossible)
    host: str                    # hostcaps.HostCaps.line()
    paths: tuple[PathParams, ...]
    skipped: tuple[str, ...] = ()
    congestion: str = ""         # TCP congestion control the nodes run with
    set_congestion: bool = False  # True: the backend sets it per node namespace (Docker)

    def to_json(self) -> dict[str, Any]:
        return {"mechanism": self.mechanism, "host": self.host, "skipped": list(self.skipped),
                "congestion": self.congestion,
                "paths": [asdict(p) for p in self.paths if p.shaped]}

    def summary(self) -> str:
        shaped = [p for p in self.paths if p.shaped]
        if not shaped or self.mechanism == "none":
            return f"links: none in force ({', '.join(self.skipped) or 'nothing requested'})"
        lat = sorted(p.latency_ms for p in shaped)
        loss = sorted(p.loss_percent for p in shaped)
        return (f"links: {len(shaped)} directed paths by {self.mechanism}, one-way latency "
                f"{lat[0]:g}-{lat[-1]:g} ms, loss {loss[0]:.3g}-{loss[-1]:.3g} %, TCP {self.congestion}")


def node_classes(net: Network) -> dict[str, tuple[str, ...]]:
    """Each node's classes, least specific first: relay, then its role; file servers are 'server'."""
    out: dict[str, tuple[str, ...]] = {}
    for n in net.nodes:
        out[n.name] = (("relay",) if n.role.is_relay else ()) + (n.role.value,)
    for s in net.fileservers:
        out[s.name] = ("server",)
    return out


def paths(net: Network, model: LinkModel) -> tuple[PathParams, ...]:
    cls = node_classes(net)
    names = list(cls)
    return tuple(model.resolve(a, cls[a], b, cls[b]) for a in names for b in names if a != b)


def check(net: Network, backend: str) -> LinksPlan | None:
    """The plan, or InputError naming the field the host cannot apply (before anything starts)."""
    model: LinkModel | None = getattr(net, "links", None)
    if model is None:
        return None
    caps = hostcaps.probe()
    log.info("host for links: %s", caps.line())
    all_paths = paths(net, model)
    wanted = sorted(model.requested())
    problem = ""
    if model.mechanism is Mechanism.NETEM:
        problem = ("mechanism = \"netem\" is not implemented yet (and this kernel has "
                   f"{'netem' if caps.netem else 'no sch_netem'}); use mechanism = \"auto\" (the NFQUEUE delay line)")
    elif backend not in ("local", "docker", "swarm"):
        problem = f"links are not implemented for --backend {backend}; use --backend local, docker or swarm"
    elif backend == "local" and not caps.cgroup_mark:
        problem = (f"the local backend tells nodes apart by cgroup (tor connects to loopback addresses from "
                   f"127.0.0.1), and this host cannot ({caps.detail or 'probe failed'}): it needs a mounted cgroup v2 "
                   "hierarchy and iptables' cgroup match, as root")
    elif not caps.delayline:
        problem = (f"this host cannot run the NFQUEUE delay line ({caps.detail or 'probe failed'}); it needs root "
                   "(CAP_NET_ADMIN), the kernel's nfnetlink_queue and iptables' NFQUEUE target, and the Python "
                   "package fnfqueue (pip install fnfqueue)")
    if problem:
        return _skip_or_fail(net, model, caps, all_paths, wanted, problem)
    cc = model.congestion
    cc_problem = _congestion_problem(cc, backend, caps) if cc is not None and cc != caps.default_cc else ""
    if cc_problem and model.congestion_optional:
        log.warning("links: congestion = %r skipped, marked optional: %s", cc, cc_problem)
        return LinksPlan(Mechanism.DELAYLINE.value, caps.line(), all_paths, ("congestion",), caps.default_cc)
    if cc_problem:
        return _skip_or_fail(net, model, caps, all_paths, ["congestion"], cc_problem,
                             'optional = ["congestion"] in [links] to keep the links and run with the host\'s '
                             "congestion control")
    return LinksPlan(Mechanism.DELAYLINE.value, caps.line(), all_paths, congestion=cc or caps.default_cc,
                     set_congestion=cc is not None and cc != caps.default_cc)


def _skip_or_fail(net: Network, model: LinkModel, caps: hostcaps.HostCaps, all_paths: tuple[PathParams, ...],
                  wanted: list[str], problem: str, hint: str = "optional = true in [links] to run with plain links") -> LinksPlan:
    fields = ", ".join(wanted) or "links"
    if not model.optional:
        raise InputError(f"scenario {net.source}, [links] ({fields}): {problem}. Or set {hint} (the run then "
                         "records what was skipped).")
    log.warning("links (%s) skipped, marked optional: %s", fields, problem)
    return LinksPlan("none", caps.line(), all_paths, tuple(wanted), caps.default_cc)


def _congestion_problem(cc: str, backend: str, caps: hostcaps.HostCaps) -> str:
    """Why the nodes cannot run congestion control ``cc`` here ('' when they can).

    A namespace other than the host's may only pick what net.ipv4.tcp_allowed_congestion_control
    lists; as root the list is widened (host.allow_congestion: it changes no one's default).
    """
    if cc not in caps.congestion_controls:
        return (f"congestion = {cc!r} is not available in this kernel (available: "
                f"{', '.join(caps.congestion_controls)}); pick one of those")
    if backend == "local":
        return (f"congestion = {cc!r}: the local backend runs every node in the host's network namespace, "
                f"whose congestion control ({caps.default_cc}) other programs share; use --backend docker "
                "(one namespace per node) or remove congestion")
    if cc in caps.allowed_cc or host.allow_congestion(cc):
        return ""
    return (f"congestion = {cc!r} is available but a node's namespace may only choose one of "
            f"net.ipv4.tcp_allowed_congestion_control ({', '.join(caps.allowed_cc)}); as root run "
            f"`sysctl -w net.ipv4.tcp_allowed_congestion_control=\"{' '.join([*caps.allowed_cc, cc])}\"`"
            " (it changes no one's default), or remove congestion")


def sysctls(plan: LinksPlan | None) -> dict[str, str]:
    """Per-container sysctls the plan needs (Docker: each node has its own namespace)."""
    if plan is None or not plan.set_congestion:
        return {}
    return {"net.ipv4.tcp_congestion_control": plan.congestion}


CGROUP_DIR = "kist-harness-links"
CGROUP_WAIT_S = 3.0
ANON_SRC = "127.0.0.1"   # where tor's connections to loopback addresses leave from (see delayline.Endpoints)


def cgroup_root() -> Path | None:
    """Where the cgroup v2 hierarchy is mounted (iptables' cgroup match is relative to it)."""
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) > 2 and parts[2] == "cgroup2":
                return Path(parts[1])
    except OSError:
        pass
    return None


def node_cgroup(run_id: str, name: str) -> str:
    """A node's cgroup, relative to the cgroup2 root."""
    return f"{CGROUP_DIR}/{run_id}/{name}"


def make_cgroups(run_id: str, names: list[str]) -> dict[str, Path]:
    root = cgroup_root()
    if root is None:
        raise StepError("links on the local backend need a cgroup v2 hierarchy (none is mounted)")
    out = {}
    for n in names:
        d = root / node_cgroup(run_id, n)
        d.mkdir(parents=True, exist_ok=True)
        out[n] = d
    return out


def remove_cgroups(run_id: str) -> list[str]:
    """This run's (empty, by now) cgroups; a cgroup still holding a process is left and logged."""
    root = cgroup_root()
    if root is None or not (root / CGROUP_DIR / run_id).is_dir():
        return []
    base = root / CGROUP_DIR / run_id
    n = 0
    for d in sorted(base.iterdir()):
        if d.is_dir():
            deadline = time.monotonic() + CGROUP_WAIT_S   # a just-killed process leaves it a moment later
            while True:
                try:
                    d.rmdir()
                    n += 1
                    break
                except OSError as exc:
                    if time.monotonic() > deadline:
                        log.warning("cgroup %s not removed: %s", d, exc)
                        break
                    time.sleep(0.05)
    with contextlib.suppress(OSError):
        base.rmdir()
        (root / CGROUP_DIR).rmdir()   # only if no other run uses it
    return [f"removed {n} node cgroups under {base}"]


def enter_cgroup(path: Path) -> Callable[[], None]:
    """For Popen(preexec_fn=...): the child moves itself into the cgroup before exec."""
    procs = str(path / "cgroup.procs")

    def _enter() -> None:
        with open(procs, "w") as f:
            f.write("0")
    return _enter


def _shaped_paths(net: Network, layout: Layout,
                  plan: LinksPlan) -> tuple[LinkModel, list[dict[str, Any]]] | None:
    """Both backends' first half: the link model and the delay line's table of shaped paths by
    address, after recording what is in force (None: no links, or no path to shape)."""
    model: LinkModel | None = getattr(net, "links", None)
    if model is None or plan.mechanism == "none":
        return None
    ip = dict(layout.ips)
    table = [{"src": ip[p.src], "dst": ip[p.dst], "latency_ms": p.latency_ms, "jitter_ms": p.jitter_ms,
              "loss_percent": p.loss_percent, "rate_mbit": p.rate_mbit} for p in plan.paths if p.shaped]
    write_in_force(layout.run_dir, plan)
    return (model, table) if table else None


def start_local(net: Network, layout: Layout, run_id: str, plan: LinksPlan | None) -> linkemu.DelayLineHandle | None:
    """The delay line for every path between this run's 127.0.0.x addresses (None: nothing to do)."""
    shaped = _shaped_paths(net, layout, plan) if plan is not None else None
    if plan is None or shaped is None:
        return None
    model, table = shaped
    ports = layout.ports
    match = ["-i", "lo", "-p", "tcp", "-m", "multiport", "--ports",
             f"{ports.or_port},{ports.dir_port},{ports.http_port}"]
    from harness.network.local import PORT_LOW, PORT_STEP
    queue = QUEUE_BASE + (ports.base - PORT_LOW) // PORT_STEP
    tag = linkemu.tag_for(run_id)
    ip = dict(layout.ips)
    names = [n for n, _ in layout.ips]
    make_cgroups(run_id, names)
    marks = {MARK_BASE + i: ip[n] for i, n in enumerate(names)}
    mark_rules = [["iptables", "-w", "5", "-t", "mangle", "-A", "OUTPUT", "-o", "lo", "-m", "cgroup", "--path",
                   node_cgroup(run_id, n), "-m", "comment", "--comment", tag, "-j", "MARK", "--set-mark",
                   str(MARK_BASE + i)] for i, n in enumerate(names)]
    handle = linkemu.start(layout.run_dir, tag, queue, table, [match], seed=model.seed, mss=model.mss,
                           marks=marks, pre_rules=mark_rules)
    log.info("%s (NFQUEUE %d)", plan.summary(), queue)
    return handle


def write_in_force(run_dir: Path, plan: LinksPlan) -> Path:
    d = run_dir / "links"
    d.mkdir(parents=True, exist_ok=True)
    f = d / "in-force.json"
    f.write_text(json.dumps(plan.to_json(), indent=1))
    return f


def env_line(run_dir: Path) -> str:
    """What the report's environment says of links: mechanism, paths, TCP, and the host's offer."""
    d = read_in_force(run_dir)
    if d is None:
        return "none (no [links] in the scenario)"
    paths = d.get("paths", [])
    if d.get("mechanism") == "none" or not paths:
        return f"none: skipped {', '.join(d.get('skipped', [])) or '-'} (host: {d.get('host', '?')})"
    lat = sorted(p["latency_ms"] for p in paths)
    loss = sorted(p["loss_percent"] for p in paths)
    return (f"{d['mechanism']}: {len(paths)} directed paths, one way {lat[0]:g}-{lat[-1]:g} ms, loss "
            f"{loss[0]:.3g}-{loss[-1]:.3g} %, TCP {d.get('congestion') or '?'} (host: {d.get('host', '?')})")


def read_in_force(run_dir: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads((run_dir / "links" / "in-force.json").read_text()))
    except (OSError, ValueError):
        return None


DOCKER_QUEUE_BASE = 3500   # NFQUEUE numbers of the Docker backend: + the third octet of the run's /24


def start_docker(net: Network, layout: Layout, run_id: str, plan: LinksPlan | None,
                 bridge: str) -> linkemu.DelayLineHandle | None:
    """The delay line in the host's namespace on the run's Docker bridge (br_netfilter shows it bridged packets).

    Containers have addresses of their own and tor binds its connections to them, so the
    address pair names both nodes; packets are taken at the bridge's PREROUTING, where the
    veth has already orphaned them (TCP small queues do not count held packets).
    """
    shaped = _shaped_paths(net, layout, plan) if plan is not None else None
    if plan is None or shaped is None:
        return None
    model, table = shaped
    bridged = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
    if not bridged.is_file() or bridged.read_text().strip() != "1":
        raise StepError("links on the Docker backend need bridged packets to pass iptables "
                        "(net.bridge.bridge-nf-call-iptables = 1, module br_netfilter); dockerd usually sets it")
    ports = layout.ports
    match = ["-i", bridge, "-p", "tcp", "-m", "multiport", "--ports",
             f"{ports.or_port},{ports.dir_port},{ports.http_port}"]
    queue = DOCKER_QUEUE_BASE + int(layout.ips[0][1].split(".")[2])
    handle = linkemu.start(layout.run_dir, linkemu.tag_for(run_id), queue, table, [match], seed=model.seed,
                           mss=model.mss)
    log.info("%s (NFQUEUE %d on %s)", plan.summary(), queue, bridge)
    return handle


SWARM_QUEUE_BASE = 4000   # NFQUEUE numbers of the Swarm backend's delay lines: + the node's index


def start_per_node(net: Network, layout: Layout, run_id: str, plan: LinksPlan | None, subnet: str,
                   namespaces: Mapping[str, Sequence[str]]) -> list[linkemu.DelayLineHandle]:
    """One delay line in each node's own network namespace, holding what arrives for that node.

    The Swarm backend's overlay has no bridge in the host's namespace to take packets at, so
    each task's namespace (entered by the argv prefix in ``namespaces``, see netns) gets a
    delay line on its PREROUTING for packets from the overlay subnet to the node's address on
    the run's ports: every directed path is delayed once, at its receiving end, by that
    path's figures, and TCP small queues on the sending side do not count held packets.
    """
    shaped = _shaped_paths(net, layout, plan) if plan is not None else None
    if plan is None or shaped is None:
        return []
    model, table = shaped
    ports = layout.ports
    tag = linkemu.tag_for(run_id)
    handles: list[linkemu.DelayLineHandle] = []
    try:
        for i, (name, ip) in enumerate(layout.ips):
            rows = [row for row in table if row["dst"] == ip]
            if not rows:
                continue
            match = ["-s", subnet, "-d", ip, "-p", "tcp", "-m", "multiport", "--ports",
                     f"{ports.or_port},{ports.dir_port},{ports.http_port}"]
            handles.append(linkemu.start(layout.run_dir, tag, SWARM_QUEUE_BASE + i, rows, [match],
                                         seed=model.seed + i, ns_prefix=tuple(namespaces[name]), mss=model.mss))
    except BaseException:
        for h in handles:
            linkemu.stop(h)
        raise
    log.info("%s (one delay line in each of %d node namespaces)", plan.summary(), len(handles))
    return handles


def skip_in_force(run_dir: Path, plan: LinksPlan, why: str) -> LinksPlan:
    """Record that an optional [links] was not applied after all (a backend found out at start)."""
    skipped = LinksPlan("none", plan.host, plan.paths, (*plan.skipped, why), plan.congestion)
    write_in_force(run_dir, skipped)
    log.warning("links skipped, marked optional: %s", why)
    return skipped
