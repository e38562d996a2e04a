"""The one traffic driver: client loops spread over the file servers, a dead node noticed.

Real downloads through a loopback SOCKS5 proxy (tests/unit/conftest.py) from real file
servers; the dead node is a real process killed with SIGKILL, seen by the local backend's
own liveness check (its pid, its command line naming the run directory).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.config import Binary, Role, Scheduler, Traffic
from harness.network.running import NodeInfo, RunningNetwork, ServerInfo
from harness.traffic import clients, driver


def _node(name: str, role: Role, run_dir: Path, socks: tuple[str, int] | None = None,
          pid: int | None = None) -> NodeInfo:
    return NodeInfo(name, role, "127.0.0.1", 0, run_dir / "cookie", run_dir, run_dir / f"{name}.log", None,
                    Scheduler.KIST, Binary.PATCHED, socks=socks, pid=pid)


@pytest.fixture
def two_servers() -> Iterator[list[tuple[str, int]]]:
    servers = [clients.make_server("127.0.0.1", 0) for _ in range(2)]
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    yield [s.server_address[:2] for s in servers]
    for s in servers:
        s.shutdown()
        s.server_close()


def test_loops_are_spread_over_the_servers(proxy_and_server, two_servers, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    socks, _one, seen = proxy_and_server
    servers = tuple(ServerInfo(f"fs{i}", host, port) for i, (host, port) in enumerate(two_servers))
    nodes = tuple(_node(f"c{i}", Role.CLIENT, tmp_path, socks=socks) for i in range(4))
    handle = RunningNetwork("t", "t-run", "local", tmp_path, "t.toml", nodes, servers)
    loops = [driver.ClientLoop(n, "bulk", tmp_path / f"{n.name}.jsonl", seed=i) for i, n in enumerate(nodes)]
    driven = driver.drive(handle, loops, Traffic(pause_scale=0, size_scale=0.001, max_downloads=2),
                          duration_s=20.0, wait_s=20.0)
    assert driven.dead == [] and driven.errors == []
    got = [d for n in nodes for d in clients.read_results(tmp_path / f"{n.name}.jsonl")]
    assert len(got) == 8 and all(d.outcome == "ok" for d in got)
    assert sorted(set(seen)) == sorted(two_servers)  # loop i -> server i mod 2
    assert seen.count(two_servers[0]) == seen.count(two_servers[1]) == 4


def test_a_relay_killed_mid_traffic_stops_the_clients_and_is_reported(proxy_and_server,  # type: ignore[no-untyped-def]
                                                                      tmp_path: Path) -> None:
    socks, (host, port), _seen = proxy_and_server
    # stands in for a relay's tor: the local backend knows it by pid and by the run dir in its argv
    relay = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", str(tmp_path)])
    try:
        nodes = (_node("relay1", Role.MIDDLE, tmp_path, pid=relay.pid),
                 _node("c0", Role.CLIENT, tmp_path, socks=socks))
        handle = RunningNetwork("t", "t-run", "local", tmp_path, "t.toml", nodes, (ServerInfo("fs", host, port),))
        threading.Timer(1.5, os.kill, args=(relay.pid, signal.SIGKILL)).start()
        start = time.monotonic()
        driven = driver.drive(handle, [driver.ClientLoop(nodes[1], "web", tmp_path / "c0.jsonl", seed=1)],
                              Traffic(size_scale=0.01), duration_s=60.0, wait_s=90.0)
        took = time.monotonic() - start
    finally:
        relay.kill()
        relay.wait()
    assert driven.dead == ["relay1"]
    assert took < 30.0, f"traffic ran {took:.1f} s of its 60 s although a relay died after 1.5 s"
    assert clients.read_results(tmp_path / "c0.jsonl")  # what was downloaded before is kept
