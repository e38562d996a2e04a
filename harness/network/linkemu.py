"""Supervise the NFQUEUE delay line: start it, steer packets to it, and take both away again.

One delay line per network namespace that carries links (the host's, for the local
backend on 127.0.0.x). The order matters for a clean run: the process binds its queue
first and says "ready", only then do the iptables rules send packets to it; at teardown
the rules go first (matched by a comment naming the run, so exactly this run's rules and
no one else's), then the process gets SIGTERM and accepts whatever it still holds. Rules
use --queue-bypass: if the process died anyway, packets pass undelayed instead of the
whole address range going dark; `alive()` tells the run so it can fail loudly.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import StepError
from harness.network import delayline
from harness.proc import run, spawn

log = logging.getLogger(__name__)

TAG_PREFIX = "kist-harness-links:"
READY_TIMEOUT_S = 10.0
STOP_WAIT_S = 5.0
CHAIN_TABLE = "mangle"
CHAIN = "PREROUTING"   # the receive side: loopback and veth have orphaned the skb, so TCP small queues
# do not count held packets against the sender (in OUTPUT they would, and throughput collapses)


def tag_for(run_id: str) -> str:
    return TAG_PREFIX + run_id


@dataclass(frozen=True)
class DelayLineHandle:
    """What teardown needs to remove one delay line, from this record alone."""

    tag: str
    queue: int
    pid: int
    config: Path
    stats: Path
    ns_prefix: tuple[str, ...] = ()   # argv prefix entering the namespace ("ip netns exec X", "nsenter ...")

    def to_json(self) -> dict[str, Any]:
        return {"tag": self.tag, "queue": self.queue, "pid": self.pid, "config": str(self.config),
                "stats": str(self.stats), "ns_prefix": list(self.ns_prefix)}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> DelayLineHandle:
        return cls(d["tag"], int(d["queue"]), int(d["pid"]), Path(d["config"]), Path(d["stats"]),
                   tuple(d.get("ns_prefix", ())))


def rule_argv(action: str, match: Sequence[str], tag: str, queue: int) -> list[str]:
    """iptables argv that adds (-A) or deletes (-D) one steering rule (OUTPUT of the mangle table)."""
    return ["iptables", "-w", "5", "-t", CHAIN_TABLE, action, CHAIN, *match, "-m", "comment", "--comment", tag,
            "-j", "NFQUEUE", "--queue-num", str(queue), "--queue-bypass"]


def mss_rule_argv(action: str, match: Sequence[str], tag: str, mss: int) -> list[str]:
    """Clamp the MSS of SYNs on the shaped links (loopback's 65 kB MSS would make one packet a burst)."""
    proto = [] if "tcp" in match else ["-p", "tcp"]
    return ["iptables", "-w", "5", "-t", CHAIN_TABLE, action, CHAIN, *match, *proto, "-m", "tcp", "--tcp-flags",
            "SYN,RST", "SYN", "-m", "comment", "--comment", tag, "-j", "TCPMSS", "--set-mss", str(mss)]


def tagged_rules(tag: str, ns_prefix: Sequence[str] = ()) -> list[list[str]]:
    """The -D argv of every rule in the mangle table whose comment is exactly tag."""
    res = run([*ns_prefix, "iptables", "-w", "5", "-t", CHAIN_TABLE, "-S"], check=False, timeout=20)
    out = []
    for line in res.stdout.splitlines():
        parts = shlex.split(line)
        if len(parts) > 2 and parts[0] == "-A" and _comment(parts) == tag:
            out.append([*ns_prefix, "iptables", "-w", "5", "-t", CHAIN_TABLE, "-D", *parts[1:]])
    return out


def _comment(parts: list[str]) -> str | None:
    for i, p in enumerate(parts[:-1]):
        if p == "--comment":
            return parts[i + 1]
    return None


def remove_rules(tag: str, ns_prefix: Sequence[str] = ()) -> list[str]:
    removed = []
    for argv in tagged_rules(tag, ns_prefix):
        res = run(argv, check=False, timeout=20)
        if res.ok:
            removed.append("iptables rule " + " ".join(argv[argv.index("-D") + 1:]))
        else:
            log.warning("could not remove %s: %s", argv, res.tail(2))
    return removed


def start(run_dir: Path, tag: str, queue: int, links: Sequence[Mapping[str, Any]], matches: Sequence[Sequence[str]],
          seed: int = 0, ns_prefix: Sequence[str] = (), mss: int | None = None,
          marks: Mapping[int, str] | None = None, pre_rules: Sequence[Sequence[str]] = ()) -> DelayLineHandle:
    """Start a delay line for links and steer the packets that match any of matches to it."""
    d = run_dir / "links"
    d.mkdir(parents=True, exist_ok=True)
    cfg = d / f"delayline-{queue}.json"
    stats = d / f"delayline-{queue}.stats.json"
    cfg.write_text(delayline.links_json(queue, seed, stats, links, marks))
    out = (d / f"delayline-{queue}.log").open("ab")
    try:
        proc = spawn([*ns_prefix, sys.executable, "-m", "harness.network.delayline", str(cfg)],
                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=out,
                     start_new_session=True)  # Ctrl-C reaches the harness, which tears down
    finally:
        out.close()
    handle = DelayLineHandle(tag, queue, proc.pid, cfg, stats, tuple(ns_prefix))
    (d / f"delayline-{queue}.handle.json").write_text(json.dumps(handle.to_json()))
    try:
        _wait_ready(proc, cfg)
        for argv in pre_rules:   # e.g. the local backend's per-node MARK rules (tagged by the caller)
            run([*ns_prefix, *argv], timeout=20)
        for m in matches:
            if mss and "udp" not in m:
                run([*ns_prefix, *mss_rule_argv("-A", m, tag, mss)], timeout=20)
            run([*ns_prefix, *rule_argv("-A", m, tag, queue)], timeout=20)
    except BaseException:
        stop(handle)
        raise
    log.info("delay line pid %d on NFQUEUE %d: %d links, %d rules tagged %s", proc.pid, queue, len(links),
             len(matches), tag)
    return handle


def _wait_ready(proc: subprocess.Popen[bytes], cfg: Path) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + READY_TIMEOUT_S
    os.set_blocking(proc.stdout.fileno(), False)
    buf = b""
    while time.monotonic() < deadline:
        chunk = proc.stdout.read()
        if chunk:
            buf += chunk
        if b"ready" in buf:
            return
        if proc.poll() is not None:
            log_tail = cfg.with_suffix("").with_suffix(".log")
            tail = log_tail.read_text(errors="replace")[-400:] if log_tail.exists() else ""
            raise StepError(f"the link delay line exited ({proc.returncode}) before it was ready: {tail.strip()}")
        time.sleep(0.02)
    raise StepError(f"the link delay line did not bind its NFQUEUE within {READY_TIMEOUT_S:.0f} s")


def alive(handle: DelayLineHandle) -> bool:
    try:
        cmdline = Path(f"/proc/{handle.pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{handle.pid}/stat").read_text()
    except OSError:
        return False
    return str(handle.config).encode() in cmdline and stat.rsplit(")", 1)[1].split()[0] != "Z"


def stop(handle: DelayLineHandle) -> list[str]:
    """Rules first (packets flow undelayed from then on), then the process; returns what was removed."""
    removed = remove_rules(handle.tag, handle.ns_prefix)
    if alive(handle):
        with contextlib.suppress(ProcessLookupError):
            os.kill(handle.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT_S
        while time.monotonic() < deadline and alive(handle):
            time.sleep(0.02)
        if alive(handle):
            log.warning("delay line pid %d ignored SIGTERM: killing it", handle.pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(handle.pid, signal.SIGKILL)
        removed.append(f"stopped delay line (pid {handle.pid}, NFQUEUE {handle.queue})")
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(handle.pid, os.WNOHANG)
    return removed


def stop_all(run_dir: Path) -> list[str]:
    """Every delay line a run directory recorded (for teardown from the state file alone)."""
    removed = []
    for f in sorted((run_dir / "links").glob("delayline-*.handle.json")):
        removed += stop(DelayLineHandle.from_json(json.loads(f.read_text())))
    return removed


def dead_lines(run_dir: Path) -> list[str]:
    """'links delay line (NFQUEUE N)' for each recorded delay line that is no longer running."""
    out = []
    for f in sorted((run_dir / "links").glob("delayline-*.handle.json")):
        h = DelayLineHandle.from_json(json.loads(f.read_text()))
        if not alive(h):
            out.append(f"links delay line (NFQUEUE {h.queue})")
    return out


def read_stats(handle: DelayLineHandle) -> dict[str, Any] | None:
    try:
        return dict(json.loads(handle.stats.read_text()))
    except (OSError, ValueError):
        return None
