"""Drive the scenario's client profiles against a running network; one JSON line per download.

Each client's downloads go through that client's own tor (its SOCKS port, reachable from
the host for both backends), so the Tor path is the node's; only the SOCKS hop is local.
Threads, not processes: the work is waiting on sockets.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from harness import traffic
from harness.config import Network, Profile
from harness.errors import InputError, StepError
from harness.network import lifecycle, ready
from harness.network.running import RunningNetwork

log = logging.getLogger(__name__)

WATCH_S = 1.0


@dataclass(frozen=True)
class LoadSummary:
    """What a traffic run produced, for a log line and the run record."""

    path: Path
    downloads: int
    failed: int
    seed: int


def run_profiles(handle: RunningNetwork, net: Network, out: Path, *, seed: int = 0,
                 stop: threading.Event | None = None) -> LoadSummary:
    """Run every client with a profile for the scenario's duration; append results to out."""
    jobs = [(c, handle.node(c.name)) for c in net.clients if c.profile is not Profile.NONE]
    if not jobs:
        raise InputError(f"scenario {net.source}: no client has a traffic profile (set profile = \"web\", "
                         "\"bulk\" or \"perf\" in a [[clients]] table)")
    if not handle.servers:
        raise InputError(f"scenario {net.source}: no [[fileservers]] to download from")
    t = net.traffic
    out.parent.mkdir(parents=True, exist_ok=True)
    parts = [out.with_name(f"{out.stem}.{c.name}.part") for c, _ in jobs]
    log.info("traffic: %d clients for %.0f s (pause x%g, size x%g), seed %d", len(jobs), t.duration_s,
             t.pause_scale, t.size_scale, seed)
    stop = stop or threading.Event()
    dead: list[str] = []
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = []
        for i, ((spec, info), part) in enumerate(zip(jobs, parts, strict=True)):
            server = handle.servers[i % len(handle.servers)]
            assert info.socks is not None
            futures.append(pool.submit(
                traffic.run_client, info.socks, (server.host, server.port), spec.profile.value, part,
                client=spec.name, duration_s=t.duration_s, pause_scale=t.pause_scale, size_scale=t.size_scale,
                max_downloads=t.max_downloads, seed=seed + i, stop=stop))
        # Watch the nodes while clients run: a dead node stops the run early with a report
        # instead of a minute of failed downloads.
        while not all(f.done() for f in futures):
            wait(futures, timeout=WATCH_S)
            if not dead and (dead := lifecycle.dead_nodes(handle)):
                stop.set()
        for f in futures:
            f.result()
    downloads = []
    with out.open("a") as fh:
        for part in parts:
            if part.exists():
                text = part.read_text()
                fh.write(text)
                downloads += [line for line in text.splitlines() if line.strip()]
                part.unlink()
    failed = sum('"outcome": "failed"' in line for line in downloads)
    log.info("traffic: %d downloads, %d failed -> %s", len(downloads), failed, out)
    if dead:
        raise StepError(ready.node_died_message(handle, dead, "during traffic")
                        + f"\n{len(downloads)} downloads up to then are in {out}")
    return LoadSummary(out, len(downloads), failed, seed)
