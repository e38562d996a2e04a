"""Find a container's network namespace on this kernel, from whichever engine reports it.

A Swarm task's container gives its ``State.Pid`` in its engine's PID namespace: this host's
for the local engine, the worker's own for an engine that runs in a container (the two-node
swarm the tests build on one machine). ``/proc/PID/status``'s ``NSpid`` line lists a
process's pid in each PID namespace from the host's down, so the host pid is a process whose
first or second entry is that pid; several namespaces may share a number, so the one taken is
the one whose network namespace holds the task's overlay address. A task on another host's
kernel is not found (None), and the caller says so.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from harness.proc import run


def ns_pids(status: str) -> tuple[int, ...]:
    """The NSpid entries of a /proc/PID/status text (host's namespace first); () if absent."""
    for line in status.splitlines():
        if line.startswith("NSpid:"):
            try:
                return tuple(int(x) for x in line.split()[1:])
            except ValueError:
                return ()
    return ()


def candidates(pid: int, proc: Path = Path("/proc")) -> list[int]:
    """Host pids of processes that are ``pid`` in the host's namespace or one level below it."""
    out = []
    for d in proc.iterdir():
        if not d.name.isdigit():
            continue
        try:
            ids = ns_pids((d / "status").read_text())
        except OSError:   # gone meanwhile
            continue
        if ids[:1] == (pid,) or ids[1:2] == (pid,):
            out.append(int(d.name))
    return sorted(out)


def prefix(host_pid: int) -> tuple[str, ...]:
    """argv prefix that runs a command in that process's network namespace (and nothing else's)."""
    return ("nsenter", f"--net=/proc/{host_pid}/ns/net")


def addresses(host_pid: int) -> set[str]:
    """The IPv4 addresses of that process's network namespace (empty if it cannot be entered)."""
    res = run([*prefix(host_pid), "ip", "-4", "-o", "addr", "show"], check=False, timeout=20)
    out = set()
    for line in res.stdout.splitlines() if res.ok else []:
        parts = line.split()
        if "inet" in parts and parts.index("inet") + 1 < len(parts):
            out.add(str(ipaddress.ip_interface(parts[parts.index("inet") + 1]).ip))
    return out


def find(pid: int, ip: str, proc: Path = Path("/proc")) -> int | None:
    """The host pid of the container process an engine calls ``pid`` whose namespace has ``ip``."""
    for host_pid in candidates(pid, proc):
        if ip in addresses(host_pid):
            return host_pid
    return None
