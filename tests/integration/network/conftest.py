"""Fixtures of the Swarm backend's tests: the engine, as found, checked to be so again afterwards."""

from __future__ import annotations

import importlib
import os
import re
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

OWNED = {"label": "kist-harness.owner=network"}


def _engine() -> Any:
    if not os.path.exists("/var/run/docker.sock") and not os.environ.get("DOCKER_HOST"):
        pytest.skip("no Docker engine here")
    client = importlib.import_module("docker").from_env(timeout=60)
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001 (any failure to reach the engine: skip)
        pytest.skip(f"Docker engine not reachable: {exc}")
    return client


def _swarm_state(client: Any) -> tuple[str, bool, bool]:
    sw = client.info().get("Swarm") or {}
    return (sw.get("LocalNodeState", ""), bool(sw.get("ControlAvailable")),
            bool(client.networks.list(names=["docker_gwbridge"])))


def _swarm_objects(client: Any) -> list[str]:
    """Every kist-harness Swarm object and task container (another helper's plain Docker
    network on the same engine has no services and no overlay)."""
    out = [c.name for c in client.containers.list(all=True, filters=OWNED) if "com.docker.swarm.task.id" in c.labels]
    out += [n.name for n in client.networks.list(filters={**OWNED, "driver": "overlay"})]
    if (client.info().get("Swarm") or {}).get("ControlAvailable"):
        out += [s.name for s in client.services.list(filters=OWNED)]
        out += [s.name for s in client.secrets.list(filters=OWNED)] + [c.name for c in client.configs.list(filters=OWNED)]
    return out


@pytest.fixture
def engine() -> Iterator[Any]:
    """The engine, as the test found it; asserts it is so again afterwards."""
    client = _engine()
    before = _swarm_state(client)
    if before[0] == "active" and not before[1]:
        pytest.skip("this engine is a swarm worker; the Swarm backend runs on a manager")
    if _swarm_objects(client):
        pytest.skip("another kist-harness swarm run is in progress on this engine")
    yield client
    assert _swarm_objects(client) == []
    after = _swarm_state(client)
    if after[2] and not before[2] and after[:2] == before[:2]:
        # dockerd at times keeps a stale endpoint on docker_gwbridge after `swarm leave` ("has
        # active endpoints" with no container on it) until it restarts: Docker's, not the run's
        from harness.network.swarmmode import remove_gwbridge

        remove_gwbridge(client)
        after = _swarm_state(client)
        if after[2]:
            warnings.warn("docker_gwbridge could not be removed after `swarm leave` (a stale endpoint in "
                          "dockerd; it goes when dockerd restarts)", stacklevel=1)
            after = (*after[:2], False)
    assert after == before, "the swarm mode (or docker_gwbridge) was not left as found"


Established = list[tuple[str, str, str, float]]   # (node, peer node, congestion control, tcp_info min_rtt ms)


def _established(containers: dict[str, Any], name_of: dict[str, str]) -> Established:
    """Every established TCP connection of each node to another node, as `ss -ti` in its
    container sees it: a connection's min_rtt is the path's round trip as TCP measured it."""
    rows = []
    for node, cont in containers.items():
        code, raw = cont.exec_run(["ss", "-tinH", "state", "established"])
        assert code == 0, raw
        lines = raw.decode(errors="replace").splitlines()
        for head, info in zip(lines[::2], lines[1::2], strict=False):
            cols = head.split()
            peer = cols[3].rsplit(":", 1)[0] if len(cols) >= 4 else ""
            m = re.search(r"\bminrtt:([0-9.]+)", info)
            if peer in name_of and name_of[peer] != node and m:
                rows.append((node, name_of[peer], info.split()[0], float(m.group(1))))
    return rows


@pytest.fixture
def established() -> Callable[[dict[str, Any], dict[str, str]], Established]:
    return _established


def _delay_lines(marker: str) -> list[int]:
    """Pids of live delay-line processes whose command line holds marker (a run directory or a
    network's name), read from /proc here rather than from the harness's own handles."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if "harness.network.delayline" in cmd and marker in cmd:
                pids.append(int(d.name))
    return pids


@pytest.fixture
def delay_lines() -> Callable[[str], list[int]]:
    return _delay_lines
