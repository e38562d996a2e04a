"""Measure what a tor relay costs in CPU per byte it relays, on a local private network.

    python -m harness.network.torcpu [--scenario default] [--seconds 60] [--tor PATH]

Brings the scenario up (local backend: every node a plain process, so /proc has its CPU
time), runs its traffic profiles for ``--seconds``, and reads for every relay the CPU time
tor used (utime + stime of /proc/PID/stat) and the bytes it wrote (GETINFO traffic/written)
at the start and end of the traffic. Prints per relay: CPU seconds per second, MB/s
written, and CPU milliseconds per MB; the estimate of docs/scale.md rests on these.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14, 15)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _written(node: object) -> int:
    import stem.control

    from harness.control.auth import Credentials, authenticate

    with stem.control.Controller.from_port(node.control_host, node.control_port) as c:  # type: ignore[attr-defined]
        authenticate(c, Credentials(node.cookie_path))  # type: ignore[attr-defined]
        return int(c.get_info("traffic/written"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", default="default")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--tor", type=Path, help="patched tor (default: the cached build)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from harness.config import load_scenario
    from harness.network import up
    from harness.traffic.profiles import run_profiles

    tor = args.tor
    if tor is None:
        from harness.build import default_patches_dir, ensure_built

        tor = ensure_built(patches_dir=default_patches_dir()).tor
    net = load_scenario(args.scenario)
    net = dataclasses.replace(net, traffic=dataclasses.replace(net.traffic, duration_s=args.seconds))
    with up(net, "local", patched=tor) as handle, tempfile.TemporaryDirectory(prefix="kist-torcpu-") as tmp:
        relays = [n for n in handle.nodes if n.pid]  # relays, authorities and clients
        start = {n.name: (_cpu_s(n.pid), _written(n)) for n in relays}  # type: ignore[arg-type]
        t0 = time.monotonic()
        run_profiles(handle, net, Path(tmp) / "downloads.jsonl", seed=1)
        wall = time.monotonic() - t0
        end = {n.name: (_cpu_s(n.pid), _written(n)) for n in relays}  # type: ignore[arg-type]
        rss = {n.name: _rss_mb(n.pid) for n in relays}  # type: ignore[arg-type]
    print(f"{args.scenario}: traffic for {wall:.0f} s, {len(relays)} tor processes, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}")
    for n in relays:
        cpu = end[n.name][0] - start[n.name][0]
        mb = (end[n.name][1] - start[n.name][1]) / 1e6
        per_mb = f"{cpu / mb * 1000:.0f} ms CPU/MB" if mb > 0.5 else "too little traffic for a per-MB figure"
        print(f"  {n.name:10} {n.role.value:9} {n.binary.value:8} {n.scheduler.value:8} CPU {cpu / wall:.3f} s/s, "
              f"written {mb / wall:.3f} MB/s, RSS {rss[n.name]:.0f} MB; {per_mb}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
