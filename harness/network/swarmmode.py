"""The engine's swarm mode as the Swarm backend needs it: joined as a manager, and left as found.

A swarm the harness finds (a manager of it) is used and never changed beyond the run's own
services. One it had to create (`docker swarm init` on an engine in no swarm) it leaves
again (`docker swarm leave --force`) once no kist-harness service is left in it, also when
the run failed or was interrupted: which of the two it was is written on the swarm's own
node as labels (``kist-harness.swarm=created``), so `net down` in another process and a
second run sharing the swarm know it too. The run's placement constraints are checked
against the swarm's nodes here, before any service exists.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.errors import InputError, StepError
from harness.network import images
from harness.network.docker import _sdk, _used_subnets

log = logging.getLogger(__name__)

CREATED_LABEL = "kist-harness.swarm"        # "created" on the node of a swarm the harness made
GWBRIDGE_LABEL = "kist-harness.gwbridge"    # "created": docker_gwbridge came with that swarm
ENGINE_LABEL = "kist-harness.engine"        # on a worker: its engine's API URL (tcp://ADDR:2375)
ADDR_POOLS = tuple(ipaddress.ip_network(f"10.{i}.0.0/16") for i in range(199, 190, -1))


@dataclass(frozen=True)
class SwarmNode:
    """One node of the swarm as placement and image distribution see it."""

    id: str
    hostname: str
    role: str
    ready: bool
    labels: Mapping[str, str]
    engine_labels: Mapping[str, str]
    os: str
    arch: str
    addr: str

    @classmethod
    def from_attrs(cls, a: Mapping[str, Any]) -> SwarmNode:
        desc, spec = a.get("Description") or {}, a.get("Spec") or {}
        engine = desc.get("Engine") or {}
        plat = desc.get("Platform") or {}
        return cls(a["ID"], desc.get("Hostname", ""), spec.get("Role", ""),
                   (a.get("Status") or {}).get("State") == "ready" and spec.get("Availability") == "active",
                   dict(spec.get("Labels") or {}), dict(engine.get("Labels") or {}), plat.get("OS", ""),
                   plat.get("Architecture", ""), (a.get("Status") or {}).get("Addr", ""))

    def value(self, key: str) -> str | None:
        fixed = {"node.id": self.id, "node.hostname": self.hostname, "node.role": self.role,
                 "node.platform.os": self.os, "node.platform.arch": self.arch}
        if key in fixed:
            return fixed[key]
        if key.startswith("node.labels."):
            return self.labels.get(key.removeprefix("node.labels."))
        if key.startswith("engine.labels."):
            return self.engine_labels.get(key.removeprefix("engine.labels."))
        return None

    def describe(self) -> str:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(self.labels.items()) if not k.startswith("kist-harness."))
        return f"{self.hostname} ({self.role}{', ' + labels if labels else ''})"


_CONSTRAINT = re.compile(r"\s*(\S+?)\s*(==|!=)\s*(\S+)\s*")


def matches(node: SwarmNode, constraints: Iterable[str]) -> bool:
    """Swarm's own rule: every constraint holds (a missing label is != anything)."""
    for c in constraints:
        m = _CONSTRAINT.fullmatch(c)
        if m is None:
            return False
        key, op, want = m.groups()
        have = node.value(key)
        if (have == want) != (op == "=="):
            return False
    return True


def check_placement(source: str, wanted: Mapping[str, Sequence[str]], nodes: Sequence[SwarmNode]) -> None:
    """InputError naming the scenario's nodes whose placement no ready node of the swarm satisfies."""
    ready = [n for n in nodes if n.ready]
    bad: dict[tuple[str, ...], list[str]] = {}
    for name, cons in wanted.items():
        if cons and not any(matches(n, cons) for n in ready):
            bad.setdefault(tuple(cons), []).append(name)
    if bad:
        cons, names = next(iter(bad.items()))
        raise InputError(
            f"scenario {source}: placement = {list(cons)} of node(s) {', '.join(names)} matches no ready node of "
            f"the swarm (it has {', '.join(n.describe() for n in ready) or 'no ready node'}); label a node "
            "(`docker node update --label-add KEY=VALUE NODE`) or change the placement field of that group")


def state(client: Any) -> Mapping[str, Any]:
    return client.info().get("Swarm") or {}


def ensure(client: Any) -> bool:
    """The engine is a swarm manager on return; True when this call created the swarm."""
    sw = state(client)
    local = sw.get("LocalNodeState", "inactive")
    if local == "active" and sw.get("ControlAvailable"):
        return False
    if local == "active":
        managers = ", ".join(m.get("Addr", "?") for m in sw.get("RemoteManagers") or []) or "unknown"
        raise InputError("--backend swarm: this Docker engine is a worker of a swarm (managers: "
                         f"{managers}); services can only be created on a manager. Run kist-harness on a "
                         "manager node, promote this one (`docker node promote` on a manager), or use "
                         "--backend docker")
    if local != "inactive":
        raise InputError(f"--backend swarm: the engine's swarm state is {local!r} ({sw.get('Error') or 'no detail'});"
                         " fix or leave that swarm (`docker swarm leave`) and retry, or use --backend docker")
    had_gwbridge = bool(client.networks.list(names=["docker_gwbridge"]))
    addr = _advertise_addr(client)
    pool = _free_pool(client)
    try:
        client.swarm.init(advertise_addr=addr, listen_addr=f"{addr}:2377" if addr else "0.0.0.0:2377",
                          default_addr_pool=[str(pool)], subnet_size=24)
    except _sdk().errors.DockerException as exc:
        raise StepError(f"`docker swarm init` failed ({exc}); init a swarm yourself or use --backend docker") from exc
    node = client.nodes.get(state(client)["NodeID"])
    spec = dict(node.attrs["Spec"])
    spec["Labels"] = {**(spec.get("Labels") or {}), CREATED_LABEL: "created",
                      **({} if had_gwbridge else {GWBRIDGE_LABEL: "created"})}
    node.update(spec)
    log.info("swarm: initialised a single-node swarm (advertise %s, address pool %s); it is left again at "
             "teardown", addr or "default", pool)
    return True


def _advertise_addr(client: Any) -> str | None:
    """The default bridge's gateway: this host's address that its own containers (a second
    engine in a container, joining as a worker) can reach; None lets Docker choose."""
    for cfg in (client.networks.get("bridge").attrs.get("IPAM") or {}).get("Config") or []:
        if cfg.get("Gateway"):
            return str(cfg["Gateway"])
    return None


def _free_pool(client: Any) -> ipaddress.IPv4Network:
    used = _used_subnets(client)
    for pool in ADDR_POOLS:
        if isinstance(pool, ipaddress.IPv4Network) and not any(pool.overlaps(u) for u in used):
            return pool
    raise StepError(f"no free /16 among {ADDR_POOLS[-1]}..{ADDR_POOLS[0]} for the swarm's address pool; "
                    "init the swarm yourself (`docker swarm init --default-addr-pool ...`)")


def nodes(client: Any) -> list[SwarmNode]:
    return [SwarmNode.from_attrs(n.attrs) for n in client.nodes.list()]


def nodes_or_self(client: Any) -> list[SwarmNode]:
    """The swarm's nodes; for an engine in no swarm, the single manager `ensure` would make of it."""
    if state(client).get("LocalNodeState") == "active":
        return nodes(client)
    info = client.info()
    engine = dict(label.split("=", 1) for label in info.get("Labels") or [] if "=" in label)
    return [SwarmNode("", info.get("Name", ""), "manager", True, {}, engine, info.get("OSType", ""),
                      info.get("Architecture", ""), "")]


def leave_if_created(client: Any) -> list[str]:
    """Leave the swarm if the harness created it and none of its services is left in it."""
    sw = state(client)
    if sw.get("LocalNodeState") != "active" or not sw.get("ControlAvailable"):
        return []
    me = client.nodes.get(sw["NodeID"])
    labels = me.attrs["Spec"].get("Labels") or {}
    if labels.get(CREATED_LABEL) != "created":
        return []
    others = client.services.list(filters={"label": f"{images.OWNER_LABEL}={images.OWNER}"})
    if others:
        log.info("swarm: %d kist-harness service(s) of another run still in it; not leaving yet", len(others))
        return []
    client.swarm.leave(force=True)
    done = ["left the swarm the harness had created"]
    if labels.get(GWBRIDGE_LABEL) == "created":
        done += remove_gwbridge(client)
    return done


def remove_gwbridge(client: Any, timeout_s: float = 15.0) -> list[str]:
    """docker_gwbridge, which swarm mode made and `swarm leave` keeps; its last endpoint (the
    ingress sandbox's) goes a moment after the leave, so removal is retried until then."""
    deadline = time.monotonic() + timeout_s
    while True:
        nets = client.networks.list(names=["docker_gwbridge"])
        if not nets:
            return []
        try:
            nets[0].remove()
            return ["removed network docker_gwbridge"]
        except _sdk().errors.NotFound:
            return []
        except _sdk().errors.APIError as exc:
            if time.monotonic() > deadline:
                log.warning("could not remove docker_gwbridge: %s", exc)
                return []
            time.sleep(0.5)
