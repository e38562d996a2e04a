"""The scenario's client profiles against a running network (`net up --traffic`); one JSON
line per download.

Each client's downloads go through that client's own tor (its SOCKS port, reachable from
the host for both backends), so the Tor path is the node's; only the SOCKS hop is local.
The clients run under the one driver (harness.traffic.driver), as the main job's do.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from harness.config import Network, Profile
from harness.errors import InputError, StepError
from harness.network import ready
from harness.network.running import RunningNetwork
from harness.traffic import driver

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrafficSummary:
    """What a traffic run produced, for a log line and the run record."""

    path: Path
    downloads: int
    failed: int
    seed: int


def run_profiles(handle: RunningNetwork, net: Network, out: Path, *, seed: int = 0,
                 stop: threading.Event | None = None) -> TrafficSummary:
    """Run every client with a profile for the scenario's duration; append results to out."""
    jobs = [(c, handle.node(c.name)) for c in net.clients if c.profile is not Profile.NONE]
    if not jobs:
        raise InputError(f"scenario {net.source}: no client has a traffic profile (set profile = \"web\", "
                         "\"bulk\" or \"perf\" in a [[clients]] table)")
    if not handle.servers:
        raise InputError(f"scenario {net.source}: no [[fileservers]] to download from")
    t = net.traffic
    out.parent.mkdir(parents=True, exist_ok=True)
    # a client with loops = n runs n download loops at once through its one tor
    loops = [(c, info, k) for c, info in jobs for k in range(c.loops)]
    parts = [out.with_name(f"{out.stem}.{c.name}.{k}.part") for c, _, k in loops]
    log.info("traffic: %d clients (%d download loops) for %.0f s (pause x%g, size x%g), seed %d", len(jobs),
             len(loops), t.duration_s, t.pause_scale, t.size_scale, seed)
    driven = driver.drive(handle, [driver.ClientLoop(info, spec.profile.value, part, seed + i)
                                   for i, ((spec, info, _), part) in enumerate(zip(loops, parts, strict=True))],
                          t, duration_s=t.duration_s, stop=stop)
    dead = driven.dead
    downloads = []
    with out.open("a") as fh:
        for part in parts:
            if part.exists():
                text = part.read_text()
                fh.write(text)
                downloads += [line for line in text.splitlines() if line.strip()]
                part.unlink()
    if driven.errors:
        raise driven.errors[0]
    failed = sum('"outcome": "failed"' in line for line in downloads)
    log.info("traffic: %d downloads, %d failed -> %s", len(downloads), failed, out)
    if dead:
        raise StepError(ready.node_died_message(handle, dead, "during traffic")
                        + f"\n{len(downloads)} downloads up to then are in {out}")
    return TrafficSummary(out, len(downloads), failed, seed)
