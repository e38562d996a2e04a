"""Capacity benchmark of the link emulator: `python -m harness.network.bench --links`.

In a private network namespace (its own lo; nothing else sees the traffic), bulk TCP
flows run over PAIRS address pairs, each pair limited by the delay line to its share of
an offered aggregate rate, with a one-way latency on every pair. Each step prints the
aggregate goodput, the delay line's CPU (user + system from /proc, in cores), CPU per
Mbit/s, and the delay error (release time minus due time, p50/p99) at that load. The
capacity is the largest step that kept up (goodput >= 90 % of offered) at <= 1 core with
p99 <= 1 ms. netem is measured the same way where the kernel has it; here it says why not.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from harness.network import hostcaps, linkemu, linkprobe

PAIRS = 4
LATENCY_MS = 10.0
BASE_PORT = 9300
STEPS_MBIT = (25.0, 50.0, 100.0, 150.0, 200.0, 300.0)


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def step(run_dir: Path, offered_mbit: float, seconds: float, pairs: int = PAIRS) -> dict[str, float]:
    addrs = [(f"127.0.1.{2 * i + 1}", f"127.0.1.{2 * i + 2}") for i in range(pairs)]
    per = offered_mbit / pairs
    links = []
    for a, b in addrs:
        links.append({"src": a, "dst": b, "latency_ms": LATENCY_MS, "rate_mbit": per, "queue_ms": 50})
        links.append({"src": b, "dst": a, "latency_ms": LATENCY_MS})
    match = ["-i", "lo", "-p", "tcp", "-m", "multiport", "--ports", f"{BASE_PORT}:{BASE_PORT + pairs}"]
    h = linkemu.start(run_dir, "kist-harness-links:bench", 4300, links, [match], mss=1448)
    results: list[linkprobe.RateResult] = []
    lock = threading.Lock()

    def flow(i: int) -> None:
        r = linkprobe.tcp_throughput(addrs[i][0], addrs[i][1], BASE_PORT + i, seconds=seconds, warmup_s=2.0)
        with lock:
            results.append(r)

    try:
        threads = [threading.Thread(target=flow, args=(i,)) for i in range(pairs)]
        for t in threads:
            t.start()
        time.sleep(2.0)                          # the flows' warm-up: slow start, not counted
        c0, t0 = _cpu_s(h.pid), time.monotonic()
        time.sleep(seconds * 0.9)
        c1, t1 = _cpu_s(h.pid), time.monotonic()
        for t in threads:
            t.join(30)
    finally:
        linkemu.stop(h)
    stats = linkemu.read_stats(h) or {}
    goodput = sum(r.mbit_s for r in results)
    cores = (c1 - c0) / (t1 - t0)
    return {"offered": offered_mbit, "goodput": goodput, "cores": cores,
            "cpu_ms_per_mbit": 1000 * cores / goodput if goodput else float("nan"),
            "p50": float(stats.get("delay_error_p50_ms", float("nan"))),
            "p99": float(stats.get("delay_error_p99_ms", float("nan")))}


def inner(seconds: float, steps: tuple[float, ...]) -> int:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    caps = hostcaps.probe()
    print(f"host: {caps.line()}", flush=True)
    print(f"delay line (NFQUEUE, SCHED_FIFO): {PAIRS} pairs, one-way {LATENCY_MS:g} ms, rate per pair = offered/"
          f"{PAIRS}, MSS 1448, {seconds:g} s per step", flush=True)
    best = None
    with tempfile.TemporaryDirectory(prefix="kist-linkbench-") as tmp:
        for mbit in steps:
            r = step(Path(tmp), mbit, seconds)
            ok = r["goodput"] >= 0.9 * mbit and r["cores"] <= 1.0 and r["p99"] <= 1.0
            print(f"offered {r['offered']:6.0f} Mbit/s  goodput {r['goodput']:6.1f} Mbit/s  cpu {r['cores']:.2f} "
                  f"core  {r['cpu_ms_per_mbit']:.2f} ms cpu/s per Mbit/s  delay error p50 {r['p50']:.3f} ms "
                  f"p99 {r['p99']:.3f} ms  {'ok' if ok else 'over'}", flush=True)
            if ok:
                best = r
    if best:
        print(f"capacity: {best['goodput']:.0f} Mbit/s aggregate at {best['cores']:.2f} core, "
              f"{best['cpu_ms_per_mbit']:.2f} ms cpu/s per Mbit/s, delay error p50 {best['p50']:.3f} ms "
              f"p99 {best['p99']:.3f} ms (goal >= 100 Mbit/s, p99 <= 1 ms)")
    else:
        print("capacity: no step kept up within 1 core and p99 <= 1 ms")
    print("netem: " + ("available, not benchmarked (no netem path yet)" if caps.netem else
                       "not available on this kernel (no sch_netem): nothing to compare"))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.network.bench --links", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=6.0, help="measured seconds per step")
    p.add_argument("--steps", default=",".join(f"{s:g}" for s in STEPS_MBIT), help="offered Mbit/s, comma-separated")
    p.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    steps = tuple(float(x) for x in args.steps.split(","))
    if args.inner:
        return inner(args.seconds, steps)
    if os.geteuid() != 0:
        print("bench --links: needs root (a network namespace, iptables, NFQUEUE)", file=sys.stderr)
        return 2
    return subprocess.call(["unshare", "--net", sys.executable, "-m", "harness.network.linkbench", "--inner",
                            "--seconds", str(args.seconds), "--steps", args.steps])


if __name__ == "__main__":
    sys.exit(main())
