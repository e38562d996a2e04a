"""Readiness and status through control ports (stem): bootstrap, flags, a working circuit.

Bounded waits everywhere: a timeout, a poll interval and time.monotonic(); a timeout or a
dead node ends with the nodes' last log lines, so the cause is on screen.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from harness.config import Role
from harness.errors import StepError
from harness.network.running import NodeInfo, RunningNetwork
from harness.traffic import clients as traffic_clients

log = logging.getLogger(__name__)

POLL_S = 0.25
# Nodes that asked for a consensus before the first vote got 404s and back off
# exponentially; a RELOAD (SIGHUP: main.c do_hup -> router_reset_*_download_failures)
# makes them fetch at once. Sent once the authorities have a consensus, then again every
# NUDGE_EVERY_S to nodes still short of directory info. Nothing is nudged after readiness.
NUDGE_EVERY_S = 3.0
ENOUGH_DIRINFO = 75  # bootstrap phase "enough_dirinfo": past it, a reload would only disturb circuits
VERIFY_SIZE = 50 * 1024
_PROGRESS_RE = re.compile(r"PROGRESS=(\d+)")

Progress = Callable[[dict[str, int], float], None]
Liveness = Callable[[], list[str]]  # names of nodes that have died


@dataclass(frozen=True)
class NodeStatus:
    """What `net status` shows for one node."""

    name: str
    role: str
    bootstrap: int | None
    flags: tuple[str, ...] = ()
    bandwidth: int | None = None      # consensus weight (KB/s units as tor reports)
    error: str = ""


def log_tail(node: NodeInfo, lines: int = 12) -> str:
    """The node's last notice-log lines (or why there are none)."""
    try:
        text = node.log_path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"  (no log: {exc.strerror})"
    return "\n".join(f"  {line}" for line in text[-lines:]) or "  (log empty)"


def _connect(node: NodeInfo) -> Any:
    """An authenticated stem Controller, or None while the port is not open yet."""
    from stem import SocketError
    from stem.connection import AuthenticationFailure
    from stem.control import Controller

    # stem reports every socket we close on purpose at INFO; keep the user's screen readable.
    logging.getLogger("stem").setLevel(logging.WARNING)
    try:
        ctl = Controller.from_port(address=node.control_host, port=node.control_port)
    except SocketError:
        return None
    try:
        ctl.authenticate()  # cookie path comes from PROTOCOLINFO; same path on host and in node
    except (AuthenticationFailure, SocketError, OSError) as exc:
        ctl.close()
        raise StepError(f"control port of {node.name} at {node.control_host}:{node.control_port} "
                        f"refused cookie authentication ({type(exc).__name__}); is {node.cookie_path} readable?") from exc
    return ctl


def bootstrap_percent(ctl: Any) -> int:
    phase = ctl.get_info("status/bootstrap-phase")
    m = _PROGRESS_RE.search(phase)
    return int(m.group(1)) if m else 0


def wait_bootstrapped(running: RunningNetwork, timeout_s: float, dead: Liveness,
                      progress: Progress | None = None) -> float:
    """Wait until every node reports 100% bootstrap; return seconds taken."""
    from stem import ControllerError, SocketClosed

    start = time.monotonic()
    deadline = start + timeout_s
    pct = {n.name: 0 for n in running.nodes}
    ctls: dict[str, Any] = {}
    authorities = {n.name for n in running.by_role(Role.AUTHORITY)}
    next_nudge = 0.0
    with ExitStack() as stack:
        while True:
            for node in running.nodes:
                if pct[node.name] >= 100:
                    continue
                if node.name not in ctls:
                    ctl = _connect(node)
                    if ctl is None:
                        continue
                    ctls[node.name] = ctl
                    stack.callback(ctl.close)
                try:
                    pct[node.name] = bootstrap_percent(ctls[node.name])
                except (ControllerError, SocketClosed):
                    ctls.pop(node.name)
            if progress:
                progress(dict(pct), time.monotonic() - start)
            if all(v >= 100 for v in pct.values()):
                return time.monotonic() - start
            if all(pct[a] >= 100 for a in authorities) and time.monotonic() >= next_nudge:
                next_nudge = time.monotonic() + NUDGE_EVERY_S
                _nudge([ctls[n] for n, v in pct.items() if v < ENOUGH_DIRINFO and n in ctls])
            gone = dead()
            if gone:
                raise StepError(node_died_message(running, gone, "while bootstrapping"))
            if time.monotonic() >= deadline:
                slow = [n for n in running.nodes if pct[n.name] < 100]
                detail = "\n".join(f"{n.name} at {pct[n.name]}%, last log lines:\n{log_tail(n)}" for n in slow[:4])
                raise StepError(f"network {running.name}: {len(slow)} node(s) not bootstrapped after "
                                f"{timeout_s:.0f} s ({', '.join(n.name for n in slow)}).\n{detail}\n"
                                "Hint: raise [network] bootstrap_timeout_s on a loaded machine.")
            time.sleep(POLL_S)


def _nudge(ctls: list[Any]) -> None:
    """Ask lagging nodes to retry directory downloads now (SIGNAL RELOAD)."""
    from stem import ControllerError, Signal, SocketClosed

    for ctl in ctls:
        try:
            ctl.signal(Signal.RELOAD)
        except (ControllerError, SocketClosed):
            continue  # the next poll notices a dead node


def node_died_message(running: RunningNetwork, names: list[str], when: str) -> str:
    parts = [f"network {running.name}: node(s) {', '.join(names)} stopped {when}."]
    for name in names:
        try:
            parts.append(f"{name}, last log lines:\n{log_tail(running.node(name))}")
        except KeyError:
            parts.append(f"{name} (a file server)")
    return "\n".join(parts)


def verify_circuits(running: RunningNetwork, timeout_s: float, dead: Liveness) -> float:
    """Every client fetches a small file from a file server through Tor; return seconds taken."""
    clients = [n for n in running.nodes if n.socks]
    if not clients or not running.servers:
        log.warning("network %s has no client or no file server: end-to-end check skipped", running.name)
        return 0.0
    server = running.servers[0]
    start = time.monotonic()
    deadline = start + timeout_s
    pending = list(clients)
    last_error = ""
    with ThreadPoolExecutor(max_workers=len(clients)) as pool:
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise StepError(f"network {running.name}: no data through Tor from {server.name} for "
                                f"{', '.join(c.name for c in pending)} within {timeout_s:.0f} s; last error: "
                                f"{last_error}\n{pending[0].name}, last log lines:\n{log_tail(pending[0])}")
            futures = {c.name: pool.submit(traffic_clients.fetch, c.socks, (server.host, server.port), VERIFY_SIZE,
                                           client=c.name, profile="verify", timeout=min(15.0, max(left, 1.0)))
                       for c in pending if c.socks}
            results = {name: f.result() for name, f in futures.items()}
            for c in list(pending):
                r = results[c.name]
                if r.outcome == traffic_clients.Outcome.OK.value:
                    log.info("%s fetched %d bytes via Tor: TTFB %.3f s, TTLB %.3f s", c.name, r.size,
                             r.ttfb_s or 0, r.ttlb_s or 0)
                    pending.remove(c)
                else:
                    last_error = r.error
            gone = dead()
            if gone:
                raise StepError(node_died_message(running, gone, "while checking circuits"))
            if pending:
                time.sleep(POLL_S * 2)
    return time.monotonic() - start


def status(running: RunningNetwork) -> list[NodeStatus]:
    """Per node: bootstrap percent, and flags and consensus weight as the first authority sees them."""
    from stem import ControllerError, SocketClosed, SocketError

    consensus: dict[str, Any] = {}
    for auth in running.by_role(Role.AUTHORITY):
        try:
            ctl = _connect(auth)
            if ctl is not None:
                with ctl:
                    consensus = {e.fingerprint: e for e in ctl.get_network_statuses()}
                break
        except (ControllerError, SocketError, StepError):
            continue
    out = []
    for node in running.nodes:
        try:
            ctl = _connect(node)
            if ctl is None:
                out.append(NodeStatus(node.name, node.role.value, None, error="control port closed"))
                continue
            with ctl:
                pct = bootstrap_percent(ctl)
        except (ControllerError, SocketClosed, StepError) as exc:
            out.append(NodeStatus(node.name, node.role.value, None, error=str(exc).splitlines()[0]))
            continue
        entry = consensus.get(node.fingerprint or "")
        out.append(NodeStatus(node.name, node.role.value, pct,
                              tuple(sorted(entry.flags)) if entry else (),
                              entry.bandwidth if entry else None))
    return out
