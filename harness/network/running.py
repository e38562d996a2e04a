"""The handle of a running network, and the state file that lets another process find it.

`RunningNetwork` is what the main job and the collector use: per node its role, control
address reachable from this machine, cookie path, fingerprint and data dir. It holds no
secrets (the cookie stays in its file) and round-trips through JSON for `net status/down`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.config import Binary, Role, Scheduler
from harness.errors import InputError

STATE_VERSION = 1


@dataclass(frozen=True)
class NodeInfo:
    """One running tor node as the host sees it."""

    name: str
    role: Role
    control_host: str
    control_port: int
    cookie_path: Path
    data_dir: Path
    log_path: Path
    fingerprint: str | None
    scheduler: Scheduler
    binary: Binary
    socks: tuple[str, int] | None = None  # clients only
    pid: int | None = None                # local backend
    container: str | None = None          # docker backend


@dataclass(frozen=True)
class ServerInfo:
    """A file server: clients fetch http://host:port/bytes/N through Tor."""

    name: str
    host: str
    port: int
    pid: int | None = None
    container: str | None = None


@dataclass(frozen=True)
class ShapingInForce:
    """What shaping was actually applied to a node (recorded with the run)."""

    node: str
    rate_mbit: float | None = None
    loss_percent: float | None = None
    latency_ms: float | None = None
    skipped: tuple[str, ...] = ()  # requested but optional and not available here


@dataclass(frozen=True)
class RunningNetwork:
    """A network that is up (or was, for `net down` after a crash)."""

    name: str
    run_id: str
    backend: str
    run_dir: Path
    scenario: str
    nodes: tuple[NodeInfo, ...]
    servers: tuple[ServerInfo, ...]
    shaping: tuple[ShapingInForce, ...] = ()
    docker_network: str | None = None
    timings: dict[str, float] = field(default_factory=dict)  # configure_s, start_bootstrap_s, verify_s
    binaries: dict[str, str] = field(default_factory=dict)  # "patched"/"stock" -> path on the host

    def node(self, name: str) -> NodeInfo:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def by_role(self, *roles: Role) -> tuple[NodeInfo, ...]:
        return tuple(n for n in self.nodes if n.role in roles)

    @property
    def clients(self) -> tuple[NodeInfo, ...]:
        return self.by_role(Role.CLIENT)

    @property
    def relays(self) -> tuple[NodeInfo, ...]:
        return tuple(n for n in self.nodes if n.role.is_relay)

    def to_json(self) -> str:
        def enc(o: Any) -> Any:
            if isinstance(o, Path):
                return str(o)
            if isinstance(o, Role | Scheduler | Binary):
                return o.value
            raise TypeError(type(o))
        return json.dumps({"version": STATE_VERSION, **asdict(self)}, default=enc, indent=1)

    @classmethod
    def from_json(cls, text: str, source: str = "state") -> RunningNetwork:
        try:
            d = json.loads(text)
            if d.pop("version", None) != STATE_VERSION:
                raise ValueError("unknown state version")
            nodes = tuple(NodeInfo(**{**n, "role": Role(n["role"]), "scheduler": Scheduler(n["scheduler"]),
                                      "binary": Binary(n["binary"]), "cookie_path": Path(n["cookie_path"]),
                                      "data_dir": Path(n["data_dir"]), "log_path": Path(n["log_path"]),
                                      "socks": tuple(n["socks"]) if n["socks"] else None})
                          for n in d.pop("nodes"))
            servers = tuple(ServerInfo(**s) for s in d.pop("servers"))
            shaping = tuple(ShapingInForce(**{**s, "skipped": tuple(s["skipped"])}) for s in d.pop("shaping"))
            return cls(nodes=nodes, servers=servers, shaping=shaping, run_dir=Path(d.pop("run_dir")), **d)
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"network state file {source} is not readable ({exc}); remove it and "
                             "clean up with `kist-harness net down --force`") from exc


def state_dir() -> Path:
    """Where `net up` leaves state files (read when called, not at import)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "kist-harness" / "net"


def state_file(network_name: str) -> Path:
    return state_dir() / f"{network_name}.json"


def save(running: RunningNetwork) -> Path:
    path = state_file(running.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(running.to_json())
    tmp.replace(path)
    return path


def load(network_name: str) -> RunningNetwork:
    path = state_file(network_name)
    if not path.is_file():
        raise InputError(f"no network {network_name!r} is up (no state file {path}); start it with "
                         f"`kist-harness net up {network_name}`")
    return RunningNetwork.from_json(path.read_text(), str(path))
