"""What this host offers for link emulation, probed for real and reported in one line.

netem (the kernel holds packets), the NFQUEUE delay line (nfnetlink_queue, iptables'
NFQUEUE and TCPMSS targets, and the `fnfqueue` package), tbf/htb for rates, iptables'
statistic match for loss. Each is tried in a throwaway network namespace, so probing
changes nothing on the host. `python -m harness.network.hostcaps` prints the result.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from harness.network import shaping
from harness.proc import run

_NS = ["unshare", "--net"] if os.geteuid() == 0 else ["unshare", "--map-root-user", "--net"]
_IPT = ["iptables", "-w", "5", "-t", "mangle", "-A", "PREROUTING", "-i", "lo", "-p", "tcp"]
_NFQ_BIND = ("import fnfqueue; c = fnfqueue.Connection(); q = c.bind(4242); "
             "q.set_mode(20, fnfqueue.COPY_PACKET); c.close()")


@dataclass(frozen=True)
class HostCaps:
    netem: bool
    tbf: bool
    htb: bool
    statistic: bool
    nfqueue_target: bool      # iptables -j NFQUEUE accepted
    tcpmss_target: bool
    nfqueue_bind: bool        # a process here can bind a queue (nfnetlink_queue + fnfqueue + CAP_NET_ADMIN)
    fnfqueue: bool
    cgroup_mark: bool         # iptables' cgroup match on a mounted cgroup v2 (the local backend's node marks)
    congestion_controls: tuple[str, ...]
    default_cc: str
    allowed_cc: tuple[str, ...] = ()   # what a namespace other than the host's may choose
    detail: str = ""

    @property
    def delayline(self) -> bool:
        return self.nfqueue_target and self.nfqueue_bind

    def line(self) -> str:
        """The one line runs and reports show."""
        yn = {True: "yes", False: "no"}
        return (f"netem {yn[self.netem]}, NFQUEUE delay line {yn[self.delayline]} "
                f"(nfqueue target {yn[self.nfqueue_target]}, bind {yn[self.nfqueue_bind]}, "
                f"fnfqueue {yn[self.fnfqueue]}), tbf {yn[self.tbf]}, htb {yn[self.htb]}, "
                f"iptables statistic {yn[self.statistic]}, TCPMSS {yn[self.tcpmss_target]}, "
                f"cgroup match {yn[self.cgroup_mark]}; "
                f"congestion control {self.default_cc} (available: {', '.join(self.congestion_controls)}; "
                f"allowed in namespaces: {', '.join(self.allowed_cc)})")


def _cc() -> tuple[tuple[str, ...], str, tuple[str, ...]]:
    base = Path("/proc/sys/net/ipv4")
    try:
        avail = tuple((base / "tcp_available_congestion_control").read_text().split())
        default = (base / "tcp_congestion_control").read_text().strip()
        allowed = tuple((base / "tcp_allowed_congestion_control").read_text().split())
    except OSError:
        return (), "unknown", ()
    return avail, default, allowed


@functools.cache
def probe() -> HostCaps:
    k = shaping.detect()
    notes = [k.detail] if k.detail else []
    tgt = run([*_NS, *_IPT, "-j", "NFQUEUE", "--queue-num", "4242", "--queue-bypass"], check=False, timeout=20)
    mss = run([*_NS, *_IPT, "--tcp-flags", "SYN,RST", "SYN", "-j", "TCPMSS", "--set-mss", "1448"],
              check=False, timeout=20)
    cg_root = next((ln.split()[1] for ln in Path("/proc/mounts").read_text().splitlines()
                    if len(ln.split()) > 2 and ln.split()[2] == "cgroup2"), None)
    cg = run([*_NS, "iptables", "-w", "5", "-t", "mangle", "-A", "OUTPUT", "-m", "cgroup", "--path", "/",
              "-j", "MARK", "--set-mark", "1"], check=False, timeout=20) if cg_root else None
    if cg_root is None:
        notes.append("no cgroup v2 hierarchy is mounted")
    elif cg is not None and not cg.ok:
        notes.append(f"cgroup match: {cg.tail(1).strip()}")
    has_fnfq = importlib.util.find_spec("fnfqueue") is not None
    bind = run([*_NS, sys.executable, "-c", _NFQ_BIND], check=False, timeout=20) if has_fnfq else None
    if not tgt.ok:
        notes.append(f"NFQUEUE target: {tgt.tail(1).strip()}")
    if not mss.ok:
        notes.append(f"TCPMSS target: {mss.tail(1).strip()}")
    if bind is not None and not bind.ok:
        notes.append(f"NFQUEUE bind: {bind.tail(1).strip()}")
    if not has_fnfq:
        notes.append("python package fnfqueue is not installed")
    avail, default, allowed = _cc()
    return HostCaps(k.netem, k.tbf, k.htb, k.statistic, tgt.ok, mss.ok, bool(bind and bind.ok), has_fnfq,
                    bool(cg and cg.ok), avail, default, allowed, "; ".join(notes))


def main() -> int:
    caps = probe()
    print(caps.line())
    if caps.detail:
        print(f"details: {caps.detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
