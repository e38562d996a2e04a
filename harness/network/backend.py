"""The one interface both backends (local processes, Docker) implement.

A backend object starts one network and can stop whatever it started, even halfway;
`teardown` works from a RunningNetwork alone, so another process (`net down`) can clean up.
The backend owns link shaping: planned and applied at start, and re-shaped on a running
network (a variant's loss on every client link), so no code outside harness.network
knows how a node's link is reached.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from pathlib import Path

from harness.config import Binary, Network
from harness.errors import StepError
from harness.network.keys import Keys
from harness.network.layout import Layout
from harness.network.running import NodeInfo, RunningNetwork, ShapingInForce


class Backend(abc.ABC):
    name: str

    def begin(self, run_id: str, binaries: Mapping[Binary, Path]) -> None:
        """Learn the run's id and binaries before `make_layout` (Swarm creates its services there,
        since their addresses are known only once the swarm has placed them); no-op by default."""
        return None

    @abc.abstractmethod
    def make_layout(self, net: Network, run_dir: Path) -> Layout:
        """Addresses and ports for every node (no processes yet)."""

    @abc.abstractmethod
    def plan_shaping(self, net: Network) -> tuple[ShapingInForce, ...]:
        """What shaping will be in force; InputError if a required kind is impossible here."""

    @abc.abstractmethod
    def start(self, net: Network, layout: Layout, keys: Mapping[str, Keys], binaries: Mapping[Binary, Path],
              run_id: str, shaping: tuple[ShapingInForce, ...]) -> RunningNetwork:
        """Start every node and file server and apply shaping; return the handle."""

    def reshape(self, running: RunningNetwork, node: NodeInfo, shaping: ShapingInForce | None) -> None:
        """Replace whatever shaping is in force on a running node's link by ``shaping``
        (None: none). StepError names the node and the command when one fails."""
        raise StepError(f"the {self.name} backend cannot shape {node.name}'s link "
                        "(its nodes share the host's network namespace); use --backend docker")

    @abc.abstractmethod
    def dead(self, running: RunningNetwork) -> list[str]:
        """Names of nodes and servers that are no longer running."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop everything this object started (safe to call after a partial start)."""

    @staticmethod
    @abc.abstractmethod
    def teardown(running: RunningNetwork) -> list[str]:
        """Stop a network from its handle alone; return what was removed."""


def get_backend(name: str) -> Backend:
    if name == "local":
        from harness.network.local import LocalBackend
        return LocalBackend()
    if name == "docker":
        from harness.network.docker import DockerBackend
        return DockerBackend()
    if name == "swarm":
        from harness.network.swarm import SwarmBackend
        return SwarmBackend()
    from harness.errors import InputError
    raise InputError(f"unknown backend {name!r}: use docker, swarm or local")


def backend_class(name: str) -> type[Backend]:
    return type(get_backend(name))
