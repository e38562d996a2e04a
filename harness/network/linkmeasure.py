"""Measure configured links end to end in a private network namespace; print JSON.

    python -m harness.network.linkmeasure SPEC.json      (as root; re-runs itself under unshare --net)

SPEC: {"paths": [{"src", "dst", "latency_ms", "jitter_ms", "loss_percent", "rate_mbit"}, ...]
(addresses in 127/8, as linkapply resolves them), "rtt": [[a, b, count], ...],
"loss": [[a, b, packets], ...], "rate": [[a, b, seconds], ...]}. The delay line and its
iptables rules are the ones the local backend uses (linkemu), on the namespace's own lo,
so nothing outside the namespace sees a packet; the namespace ends with the process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from harness.network import delayline, linkemu, linkprobe

PORT = 9400


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Measure in this (private) namespace; the probes run at the delay line's real-time priority.

    The link is under test, not the machine's scheduler: on a 2-core machine at load 30 a
    normal-priority echo loop waits milliseconds to be woken, which would be charged to the
    link's latency.
    """
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    out_sched = delayline._realtime()
    out: dict[str, Any] = {"rtt": [], "loss": [], "rate": [], "scheduling": out_sched}
    match_tcp = ["-i", "lo", "-p", "tcp", "-m", "multiport", "--ports", f"{PORT}:{PORT + 99}"]
    match_udp = ["-i", "lo", "-p", "udp", "-m", "multiport", "--ports", f"{PORT}:{PORT + 99}"]
    port = iter(range(PORT, PORT + 100))
    with tempfile.TemporaryDirectory(prefix="kist-linkmeasure-") as tmp:
        h = linkemu.start(Path(tmp), "kist-harness-links:measure", 4400, spec["paths"], [match_tcp, match_udp],
                          seed=int(spec.get("seed", 1)), mss=1448)
        try:
            for a, b, count in spec.get("rtt", []):
                r = linkprobe.tcp_rtt(a, b, next(port), count=int(count), interval_s=0.005)
                out["rtt"].append({"a": a, "b": b, "median_ms": r.median_ms, "stdev_ms": r.stdev_ms,
                                   "min_ms": r.min_ms, "tcp_info_rtt_ms": r.tcp_info_rtt_ms, "samples": r.samples,
                                   "iqr_ms": r.iqr_ms})
            for a, b, n in spec.get("loss", []):
                lr = linkprobe.udp_loss(a, b, next(port), count=int(n), pps=10_000)
                out["loss"].append({"a": a, "b": b, "sent": lr.sent, "received": lr.received})
            for a, b, secs in spec.get("rate", []):
                rr = linkprobe.tcp_throughput(a, b, next(port), seconds=float(secs), warmup_s=1.5)
                out["rate"].append({"a": a, "b": b, "mbit_s": rr.mbit_s})
        finally:
            linkemu.stop(h)
        out["delayline"] = linkemu.read_stats(h)
    return out


def run_isolated(spec: dict[str, Any], timeout_s: float = 300) -> dict[str, Any]:
    """measure() in a fresh network namespace (needs root); the parsed JSON it printed."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
    try:
        res = subprocess.run(["unshare", "--net", sys.executable, "-m", "harness.network.linkmeasure", "--inner",
                              f.name], capture_output=True, text=True, timeout=timeout_s, check=False)
    finally:
        os.unlink(f.name)
    if res.returncode != 0:
        raise RuntimeError(f"linkmeasure failed ({res.returncode}): {res.stderr[-2000:]}")
    return dict(json.loads(res.stdout.strip().splitlines()[-1]))


def main(argv: list[str]) -> int:
    if argv[:1] == ["--inner"]:
        print(json.dumps(measure(json.loads(Path(argv[1]).read_text()))))
        return 0
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    print(json.dumps(run_isolated(json.loads(Path(argv[0]).read_text())), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
