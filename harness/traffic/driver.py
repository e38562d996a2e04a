"""The one traffic driver: every client loop of a running network, spread over its file
servers, while the nodes are watched.

Both `kist-harness net up --traffic` (harness.traffic.profiles) and each phase of the main
job (harness.run.phase) drive clients through here, so the two cannot drift: client ``i``
downloads from server ``i mod servers``; a node or server that stops mid-traffic stops the
clients early and is reported (``Driven.dead``), instead of a minute of failed downloads
or, worse, a phase that quietly measures a smaller network. Threads, not processes: the
work is waiting on sockets.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.config import Traffic
from harness.network import lifecycle
from harness.network.running import NodeInfo, RunningNetwork
from harness.traffic import clients

log = logging.getLogger(__name__)

WATCH_S = 1.0      # how often the nodes are checked while clients run
POLL_S = 0.5       # how often the driver wakes to look at clients and the stop conditions
JOIN_S = 30.0      # a client loop finishing its download after stop


@dataclass(frozen=True)
class ClientLoop:
    """One download loop of one client node: its profile, results file and seed."""

    node: NodeInfo
    profile: str
    out: Path
    seed: int


@dataclass
class Driven:
    """What the drive ended with: nodes found dead (empty: none) and the loops' errors."""

    dead: list[str] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)


def drive(handle: RunningNetwork, loops: Sequence[ClientLoop], traffic: Traffic, *, duration_s: float,
          pause_factor: float = 1.0, wait_s: float | None = None, stop: threading.Event | None = None,
          failed: Callable[[], bool] | None = None, tick: Callable[[], None] | None = None,
          tick_s: float = 5.0, may_die: frozenset[str] = frozenset()) -> Driven:
    """Run every loop for duration_s (each finishes its download in flight), at most wait_s
    in all (None: until they end); stop early when a node dies or ``failed()`` says so
    (e.g. a collector gave up). ``tick`` is called every ``tick_s`` for progress lines.
    ``may_die``: nodes a fault plan ends on purpose (the edge scenario's killed exit), whose
    death does not stop the traffic."""
    if not handle.servers:
        raise ValueError("drive needs a file server")  # callers check the scenario first
    stop = stop or threading.Event()
    out = Driven()
    deadline = None if wait_s is None else time.monotonic() + wait_s

    def loop(i: int, job: ClientLoop) -> None:
        server = handle.servers[i % len(handle.servers)]
        assert job.node.socks is not None, f"{job.node.name} is a client: it has a SOCKS port"
        try:
            clients.run_client(job.node.socks, (server.host, server.port), job.profile, job.out,
                               client=job.node.name, duration_s=duration_s,
                               pause_scale=traffic.pause_scale * pause_factor, size_scale=traffic.size_scale,
                               max_downloads=traffic.max_downloads, seed=job.seed, stop=stop,
                               circuit_per_download=traffic.circuit_per_download, cutoff=deadline)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            out.errors.append(exc)

    threads = [threading.Thread(target=loop, args=(i, job), name=f"traffic-{job.node.name}-{i}", daemon=True)
               for i, job in enumerate(loops)]
    for t in threads:
        t.start()
    watched = ticked = time.monotonic()
    while any(t.is_alive() for t in threads) and not out.errors and not (failed and failed()):
        if deadline is not None and time.monotonic() >= deadline:
            break
        time.sleep(POLL_S)
        now = time.monotonic()
        if now - watched >= WATCH_S:
            watched = now
            out.dead = [n for n in lifecycle.dead_nodes(handle) if n not in may_die]
            if out.dead:
                log.warning("traffic: %s stopped; stopping the clients", ", ".join(out.dead))
                break
        if tick is not None and now - ticked >= tick_s:
            ticked = now
            tick()
    stop.set()
    joined_by = time.monotonic() + JOIN_S  # one bound for all: in-flight downloads end at the cutoff
    for t in threads:
        t.join(timeout=max(0.0, joined_by - time.monotonic()))
    return out
