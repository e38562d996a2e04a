"""The one interface both backends (local processes, Docker) implement.

A backend object starts one network and can stop whatever it started, even halfway;
`teardown` works from a RunningNetwork alone, so another process (`net down`) can clean up.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from pathlib import Path

from harness.config import Binary, Network
from harness.network.keys import Keys
from harness.network.layout import Layout
from harness.network.running import RunningNetwork, ShapingInForce


class Backend(abc.ABC):
    name: str

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
    from harness.errors import InputError
    raise InputError(f"unknown backend {name!r}: use docker or local")


def backend_class(name: str) -> type[Backend]:
    return type(get_backend(name))
