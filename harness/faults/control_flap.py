"""The control port closes and reopens while a collector records the relay.

Closed, for real, at the kernel: an iptables rule answers every new connection to the
port with a TCP reset, and ``ss -K`` destroys the established one (what a restarted
ControlPort listener or a dropped link does to the collector). The rule's packet counter
counts the collector's reconnection attempts while the port is closed: with backoff they
grow logarithmically with the time closed, not linearly.

Goal: a gap recorded per closure, each with start, end and cause; reconnection after
each reopening; attempts within what exponential backoff allows; committed records lost 0.
"""

from __future__ import annotations

import contextlib
import math
import subprocess
import time

from harness.faults.collecting import Running, gaps_of
from harness.faults.common import Figure, Lab, Ledger

COMMENT = "kist-harness.faults=control-flap"


def _rule(op: str, ip: str, port: int) -> list[str]:
    return ["iptables", op, "INPUT", "-p", "tcp", "-d", ip, "--dport", str(port), "--syn",
            "-m", "comment", "--comment", COMMENT, "-j", "REJECT", "--reject-with", "tcp-reset"]


def _attempts(ip: str, port: int) -> int:
    out = subprocess.run(["iptables", "-L", "INPUT", "-v", "-x", "-n"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if COMMENT in line and f"dpt:{port}" in line:
            return int(line.split()[0])
    return 0


@contextlib.contextmanager
def closed(ip: str, port: int):  # type: ignore[no-untyped-def]
    subprocess.run(_rule("-I", ip, port), check=True)
    try:
        # the established connection: destroyed by the kernel (the collector reads an abort)
        subprocess.run(["ss", "-K", "dst", ip, "dport", "=", str(port)], capture_output=True)
        yield
    finally:
        subprocess.run(_rule("-D", ip, port), capture_output=True)


def run(lab: Lab, flaps: int = 10, up_s: float = 3.0, closed_s: float = 4.0) -> Figure:
    fig = Figure(f"control port closed and reopened x{flaps}")
    node = lab.node
    store = lab.work / "control-flap.db"
    run_id = "control-flap"
    ledger = Ledger(store)
    attempts: list[int] = []
    windows: list[tuple[float, float]] = []
    first = 0.25  # Running's backoff_first_s
    with Running(lab, store, run_id) as r:
        if not r.wait_connected(0):
            fig.problems.append(f"the collector never connected: {r.error}")
            return fig
        for i in range(flaps):
            time.sleep(up_s)
            ledger.sample()
            with closed(node.control_host, node.control_port):
                start = time.time()
                time.sleep(closed_s)
                attempts.append(_attempts(node.control_host, node.control_port))
            windows.append((start, time.time()))
            if not r.wait_connected(i + 1, timeout=30):
                fig.problems.append(f"no reconnect after reopening {i + 1} within 30 s ({r.error})")
                break
        time.sleep(up_s)
        ledger.sample()
    gaps = gaps_of(store, run_id)
    complete = [g for g in gaps if {"start", "end", "reason"} <= g.keys() and g["reason"] and not g.get("open")]
    covered = sum(any(g["start"] <= s + 1.0 and g["end"] >= e - 0.5 for g in gaps) for s, e in windows)
    # backoff: attempts at first, 2*first, 4*first, ... (capped) after the drop
    allowed = math.ceil(math.log2(closed_s / first + 1)) + 1
    lost = ledger.lost()
    fig.values.update(flaps=len(windows), committed_lost=lost, gaps=len(gaps), gaps_with_start_end_cause=len(complete),
                      closures_covered=covered, reconnects=r.collector.progress.gaps,
                      attempts_while_closed="/".join(map(str, attempts)) or "-", backoff_allows=allowed,
                      gap_s=("{:.1f}-{:.1f}".format(min(g["seconds"] for g in gaps), max(g["seconds"] for g in gaps)))
                      if gaps else "-",
                      causes=",".join(sorted({g["reason"].split(" (")[0] for g in gaps})) or "-")
    if r.error is not None:
        fig.problems.append(f"the collector stopped: {r.error}")
    if lost:
        fig.problems.append(f"{lost} committed records lost")
    if len(complete) != len(windows) or covered != len(windows):
        fig.problems.append(f"{len(complete)} complete gaps, {covered} covering, for {len(windows)} closures")
    if any(a > allowed for a in attempts):
        fig.problems.append(f"more attempts while closed than backoff allows ({attempts} > {allowed})")
    if attempts and min(attempts) == 0:
        fig.problems.append("no reconnection attempt while closed: was the connection dropped?")
    return fig
