"""Where each node lives: one IP per node, the same port numbers on every IP.

Giving every node its own address (127.0.0.x locally, a container IP under Docker) lets
all nodes share one small block of port numbers, so a 100-node network needs 5 ports.
Paths are the same on the host and inside containers (bind mounts at identical paths), so
a cookie path read from PROTOCOLINFO is valid from the host for either backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.config import Network


@dataclass(frozen=True)
class Ports:
    """Port numbers every node uses on its own address."""

    base: int

    @property
    def or_port(self) -> int:
        return self.base

    @property
    def dir_port(self) -> int:
        return self.base + 1

    @property
    def socks_port(self) -> int:
        return self.base + 2

    @property
    def control_port(self) -> int:
        return self.base + 3

    @property
    def http_port(self) -> int:
        return self.base + 4

    def all(self) -> tuple[int, ...]:
        return tuple(range(self.base, self.base + 5))


@dataclass(frozen=True)
class Layout:
    """Addresses and directories of every node (tor nodes and file servers) of one run."""

    run_dir: Path
    ports: Ports
    ips: tuple[tuple[str, str], ...]  # (node name, ip) in description order

    def ip(self, name: str) -> str:
        for n, ip in self.ips:
            if n == name:
                return ip
        raise KeyError(name)

    def node_dir(self, name: str) -> Path:
        return self.run_dir / "nodes" / name

    def data_dir(self, name: str) -> Path:
        return self.node_dir(name) / "data"

    def torrc(self, name: str) -> Path:
        return self.node_dir(name) / "torrc"

    def log_file(self, name: str) -> Path:
        return self.data_dir(name) / "notice.log"


def all_names(net: Network) -> list[str]:
    """Every node needing an address: tor nodes first, then file servers."""
    return [n.name for n in net.nodes] + [s.name for s in net.fileservers]
