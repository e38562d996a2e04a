"""Benchmark: a fleet of relays into one store (``kist-harness collect --fleet``'s pipeline).

    python -m harness.control.fleetbench [--relays 10,50] [--rate 500] [--seconds 15]
                                         [--processes 1,2] [--parse-workers 0] [--records small]
    python -m harness.control.bench --fleet 10,50 ...          (the same, from the main benchmark)

For each fleet size, one process serves that many replay control ports (``replayport``:
real sockets speaking the control protocol), each streaming KIST_RUN lines at ``--rate``
events/s for ``--seconds`` (500/s is a busy relay at a 2 ms interval); a fresh process runs
the real :class:`~harness.control.fleet.FleetCollector` over them (shards, per-relay
Collectors, one writer per shard, SQLite WAL with synchronous=FULL). Reported per
configuration: events offered and stored (KIST_RUN records counted in the store
afterwards), lost = offered - stored, shed, events/s into the store (from the first
line sent to the last one stored), the collector's CPU seconds per second of wall time
and per event, its peak RSS (the shards and their workers, summed), and the replay side's
CPU (it shares the cores: on a separate machine it would not).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PAGE = os.sysconf("SC_PAGE_SIZE")


def _tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (from /proc), in MB."""
    total, stack, seen = 0, [pid], set()
    while stack:
        p = stack.pop()
        if p in seen:
            continue
        seen.add(p)
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * PAGE
            for task in Path(f"/proc/{p}/task").iterdir():
                stack.extend(int(c) for c in (task / "children").read_text().split())
    return total / 2**20


def serve(n: int, rate: float | None, seconds: float, records: str) -> None:
    """The relays: n replay ports; print their ports, then serve until stdin closes."""
    from harness.control.bench import _lines
    from harness.control.replayport import ReplaySpec, replay_port

    lines = _lines(records, 500)
    total = int((rate or 500) * seconds)
    repeat = max(1, total // len(lines))
    with contextlib.ExitStack() as stack:
        ports = [stack.enter_context(replay_port(ReplaySpec(lines, repeat=repeat, rate=rate))) for _ in range(n)]
        print(json.dumps({"ports": [p.port for p in ports], "per_relay": repeat * len(lines)}), flush=True)
        sys.stdin.readline()  # "report"
        first = min((p.first_sent_at for p in ports if p.first_sent_at), default=0.0)
        last_done = all(p.done.is_set() for p in ports)
        print(json.dumps({"sent": sum(p.sent for p in ports), "first_sent_mono": first, "all_done": last_done,
                          "cpu_s": time.process_time()}), flush=True)
        sys.stdin.readline()


def collect(ports: list[int], expected: int, processes: int, parse_workers: int, out: Path,
            timeout: float) -> dict[str, Any]:
    """The collector side, in this (fresh) process: run the fleet until `expected` are in."""
    import threading

    from harness.control.fleet import FleetCollector, FleetSettings
    from harness.control.fleetfile import RelaySpec
    from harness.store.db import Store
    from harness.store.records import KIST_RUN

    specs = [RelaySpec(f"r{i:03d}", control=f"127.0.0.1:{p}") for i, p in enumerate(ports)]
    settings = FleetSettings(run_id="fleetbench", duration_s=None, snapshot_every_s=3600, stall_s=3600,
                             parse_workers=parse_workers)
    fc = FleetCollector(specs, settings, out, processes)
    peak = [0.0]
    high_queue = [0]
    done_at = [0.0]
    stored_at = [0.0]

    def watch(_fc: FleetCollector) -> None:
        peak[0] = max(peak[0], _tree_rss_mb(os.getpid()))
        rows = _fc.states.values()
        high_queue[0] = max(high_queue[0], sum(s.queued for s in rows))
        if sum(s.stored for s in rows) >= expected and not stored_at[0]:
            stored_at[0] = time.time()  # (own records count too: a few per relay, early by that much)
        if sum(s.events for s in rows) >= expected and not done_at[0]:
            done_at[0] = time.monotonic()  # every event received: let the writers drain, then stop
            t = threading.Timer(3.0, _fc.stop)
            t.daemon = True
            t.start()

    guard = threading.Timer(timeout, fc.stop)
    guard.daemon = True
    guard.start()
    t0 = time.monotonic()
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    states = fc.run(watch)
    wall = time.monotonic() - t0
    guard.cancel()
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    with Store(out, readonly=True) as store:
        stored = store.count(KIST_RUN)
        last_ts = store.db.execute("SELECT max(ts), min(ts) FROM records WHERE kind=?", (KIST_RUN,)).fetchone()
    rows = list(states.values())
    return {"stored": stored, "shed": sum(s.shed for s in rows), "errors": sum(s.errors for s in rows),
            "received": sum(s.events for s in rows), "gaps": sum(s.gaps for s in rows),
            "states": sorted({s.state for s in rows}), "wall_s": wall, "cpu_s": cpu,
            "arrival_span_s": (last_ts[0] - last_ts[1]) if last_ts[0] else 0.0,
            "peak_rss_mb": peak[0], "queue_high_water": high_queue[0],
            "received_all_at_s": (done_at[0] - t0) if done_at[0] else None, "t0_mono": t0,
            "first_to_stored_s": (stored_at[0] - last_ts[1]) if stored_at[0] and last_ts[1] else None}


def run_config(n: int, rate: float | None, seconds: float, processes: int, parse_workers: int,
               records: str) -> dict[str, Any] | None:
    server = subprocess.Popen([sys.executable, "-m", "harness.control.fleetbench", "--serve", str(n),
                               str(rate or 0), str(seconds), records],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdin and server.stdout
        hello = json.loads(server.stdout.readline())
        expected = hello["per_relay"] * n
        with tempfile.TemporaryDirectory(prefix="kist-fleetbench-") as tmp:
            cmd = [sys.executable, "-m", "harness.control.fleetbench", "--collect",
                   json.dumps({"ports": hello["ports"], "expected": expected, "processes": processes,
                               "parse_workers": parse_workers, "out": str(Path(tmp) / "fleet.db"),
                               "timeout": seconds * 6 + 60})]
            res = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if res.returncode != 0:
                print(f"[fleet {n}] processes={processes}: failed\n{res.stderr[-2000:]}")
                return None
            r: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
        server.stdin.write("report\n")
        server.stdin.flush()
        side = json.loads(server.stdout.readline())
    finally:
        with contextlib.suppress(OSError):
            if server.stdin:
                server.stdin.close()
        server.wait(30)
    r.update(offered=expected, sent=side["sent"], replay_cpu_s=side["cpu_s"])
    return r


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--relays", default="10,50", help="fleet sizes, comma-separated")
    p.add_argument("--rate", type=float, default=500.0, help="KIST_RUN events/s per relay (0: as fast as possible)")
    p.add_argument("--seconds", type=float, default=15.0, help="how long each relay streams")
    p.add_argument("--processes", default="2", help="shard process counts to try, comma-separated")
    p.add_argument("--parse-workers", type=int, default=0, help="parse processes per shard")
    p.add_argument("--records", default="small", help="small, real or sim (see harness.control.bench)")
    p.add_argument("--serve", nargs=4, help=argparse.SUPPRESS)
    p.add_argument("--collect", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        n, rate, seconds, records = args.serve
        serve(int(n), float(rate) or None, float(seconds), records)
        return 0
    if args.collect:
        c = json.loads(args.collect)
        print(json.dumps(collect(c["ports"], c["expected"], c["processes"], c["parse_workers"],
                                 Path(c["out"]), c["timeout"])))
        return 0
    print(f"cores: {os.cpu_count()}; records: {args.records}; per relay: "
          f"{args.rate or 'as fast as possible'} events/s for {args.seconds:g} s")
    for n in (int(x) for x in args.relays.split(",")):
        for k in (int(x) for x in args.processes.split(",")):
            r = run_config(n, args.rate or None, args.seconds, k, args.parse_workers, args.records)
            if r is None:
                continue
            span = r["first_to_stored_s"] or r["wall_s"]
            rate = r["stored"] / span if span else 0.0
            kept_up = ("kept up" if span <= args.seconds * 1.1 + 2 else
                       f"fell behind: {span:.1f} s from the first event received to the last stored, for "
                       f"{args.seconds:g} s of events; reading took {r['arrival_span_s']:.1f} s")
            print(f"[fleet {n}] processes={k} parse_workers={args.parse_workers}: offered {r['offered']} "
                  f"({n * (args.rate or 0):.0f}/s), stored {r['stored']}, lost {r['offered'] - r['stored']} "
                  f"(shed {r['shed']}, errors {r['errors']}, gaps {r['gaps']}); {rate:.0f} events/s into the store "
                  f"({kept_up}); collector CPU {r['cpu_s']:.1f} s = "
                  f"{r['cpu_s'] / max(r['wall_s'], 1e-9):.2f} cores, {r['cpu_s'] / max(r['stored'], 1) * 1e6:.0f} us/event; "
                  f"peak RSS {r['peak_rss_mb']:.0f} MB; queue high water {r['queue_high_water']}; "
                  f"replay side CPU {r['replay_cpu_s']:.1f} s; relay states {','.join(r['states'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
