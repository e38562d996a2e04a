"""Link shaping on a node's egress: rate (tbf), random loss (iptables statistic), latency (netem).

What the kernel can do is detected once by trying each kind in a throwaway network
namespace (`unshare --net`): a kernel without sch_netem (as on this project's CI machine)
makes latency impossible, and a scenario that asks for it fails clearly unless it marked
shaping optional. The commands are built as argv lists so they are unit-tested as data.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass

from harness.config import Shaping
from harness.errors import InputError
from harness.network.running import ShapingInForce
from harness.proc import run

log = logging.getLogger(__name__)

TBF_LATENCY_MS = 50   # how long a packet may wait in the tbf queue before being dropped


@dataclass(frozen=True)
class KernelShaping:
    """Which shaping kinds this kernel offers (and why not, when it does not)."""

    tbf: bool
    htb: bool
    netem: bool
    statistic: bool
    detail: str = ""

    def supports(self, kind: str) -> bool:
        return {"rate": self.tbf, "loss": self.statistic, "latency": self.netem}[kind]


_PROBES = {
    "tbf": ["tc", "qdisc", "add", "dev", "lo", "root", "tbf", "rate", "1mbit", "burst", "32kbit", "latency", "50ms"],
    "htb": ["tc", "qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb", "default", "10"],
    "netem": ["tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
    "statistic": ["iptables", "-A", "OUTPUT", "-m", "statistic", "--mode", "random", "--probability", "0.5",
                  "-j", "DROP"],
}


@functools.cache
def detect() -> KernelShaping:
    """Try each kind in a new network namespace (root: unshare -n; else a user namespace)."""
    prefix = ["unshare", "--net"] if os.geteuid() == 0 else ["unshare", "--map-root-user", "--net"]
    found: dict[str, bool] = {}
    notes = []
    for kind, argv in _PROBES.items():
        res = run([*prefix, *argv], check=False, timeout=20)
        found[kind] = res.ok
        if not res.ok:
            notes.append(f"{kind}: {res.tail(2).strip() or 'exit ' + str(res.returncode)}")
    caps = KernelShaping(found["tbf"], found["htb"], found["netem"], found["statistic"], "; ".join(notes))
    log.info("kernel shaping: tbf=%s htb=%s netem=%s iptables-statistic=%s", caps.tbf, caps.htb, caps.netem,
             caps.statistic)
    return caps


def requested_kinds(s: Shaping) -> list[str]:
    return [k for k, v in (("rate", s.rate_mbit), ("loss", s.loss_percent), ("latency", s.latency_ms))
            if v is not None]


def plan(node: str, s: Shaping, caps: KernelShaping, source: str) -> ShapingInForce:
    """What will be applied to one node; InputError for a required kind the kernel lacks."""
    missing = [k for k in requested_kinds(s) if not caps.supports(k)]
    if missing and not s.optional:
        raise InputError(
            f"scenario {source}: node {node} asks for {', '.join(missing)} shaping, which this kernel cannot do "
            f"({caps.detail or 'probe failed'}). Remove it, or set optional = true in the node's [shaping] "
            "table to run without it (the run then records it as skipped).")
    for k in missing:
        log.warning("%s: %s shaping skipped (kernel lacks it; marked optional)", node, k)
    keep = set(requested_kinds(s)) - set(missing)
    return ShapingInForce(node, s.rate_mbit if "rate" in keep else None,
                          s.loss_percent if "loss" in keep else None,
                          s.latency_ms if "latency" in keep else None, tuple(missing))


def tbf_burst_bytes(rate_mbit: float) -> int:
    """10 ms worth of bytes at the rate, at least 10 full-size packets (tbf needs burst >= rate/HZ)."""
    return max(15_000, int(rate_mbit * 1e6 / 8 * 0.010))


# argv lists removing whatever ``commands`` put in force on eth0 (re-shaping starts with
# them; removing what is not there fails, harmlessly)
RESET: tuple[list[str], ...] = (["tc", "qdisc", "del", "dev", "eth0", "root"], ["iptables", "-F", "OUTPUT"])


def commands(s: ShapingInForce, dev: str = "eth0") -> list[list[str]]:
    """argv lists that put s in force on dev's egress, to run inside the node's namespace."""
    cmds: list[list[str]] = []
    rate = ["tbf", "rate", f"{s.rate_mbit:g}mbit", "burst", str(tbf_burst_bytes(s.rate_mbit or 0)),
            "latency", f"{TBF_LATENCY_MS}ms"] if s.rate_mbit else []
    if s.latency_ms is not None:
        cmds.append(["tc", "qdisc", "replace", "dev", dev, "root", "handle", "1:", "netem",
                     "delay", f"{s.latency_ms:g}ms", "limit", "100000"])
        if rate:
            cmds.append(["tc", "qdisc", "add", "dev", dev, "parent", "1:1", "handle", "10:", *rate])
    elif rate:
        cmds.append(["tc", "qdisc", "replace", "dev", dev, "root", *rate])
    if s.loss_percent is not None:
        cmds.append(["iptables", "-A", "OUTPUT", "-o", dev, "-m", "statistic", "--mode", "random",
                     "--probability", f"{s.loss_percent / 100:.6f}", "-j", "DROP"])
    return cmds
