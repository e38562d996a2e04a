"""Local backend: the network as tor processes on 127.0.0.x (no Docker, no root).

Every node gets its own loopback address (Linux routes all of 127/8 to lo), all nodes
share one block of ports from this area's range. Processes are tracked by pid and ended
by pid; a pid is only signalled if its command line still names this run's directory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from harness.config import Binary, Network
from harness.errors import InputError, StepError
from harness.network import linkapply, linkemu
from harness.network.backend import Backend
from harness.network.keys import Keys
from harness.network.layout import Layout, Ports, all_names
from harness.network.running import NodeInfo, RunningNetwork, ServerInfo, ShapingInForce
from harness.proc import spawn
from harness.traffic import clients

log = logging.getLogger(__name__)

FIRST_IP = 2          # 127.0.0.2 ...
LAST_IP = 200         # ... 127.0.0.200: this area's loopback addresses
PORT_LOW, PORT_HIGH = 21000, 22999
PORT_STEP = 8
STOP_WAIT_S = 5.0


def _free(ip: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as tor does: TIME_WAIT is no clash
        try:
            s.bind((ip, port))
        except OSError:
            return False
    return True


def pick_ports(ips: list[str]) -> Ports:
    """The first block of ports free on every address (another network may hold one)."""
    for base in range(PORT_LOW, PORT_HIGH - PORT_STEP, PORT_STEP):
        ports = Ports(base)
        if all(_free(ip, port) for ip in ips for port in ports.all()):
            return ports
    raise StepError(f"no free block of ports in {PORT_LOW}-{PORT_HIGH} on {ips[0]}..{ips[-1]}; "
                    "stop other networks (kist-harness net down NAME)")


def _pid_alive(pid: int, marker: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    except (OSError, IndexError):
        pass
    return marker in cmdline


def _marked_pids(marker: str) -> dict[str, int]:
    """Every live process whose command line names this run's directory.

    A signal that lands inside `subprocess.Popen` (after the exec, before Popen returns)
    leaves a child nobody recorded; sweeping by the run directory finds it anyway.
    """
    found: dict[str, int] = {}
    if not marker.startswith("/"):  # an empty marker would match every process
        return found
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid() and _pid_alive(int(entry.name), marker):
            found[f"pid {entry.name}"] = int(entry.name)
    return found


def _stop_pids(pids: Mapping[str, int], marker: str) -> list[str]:
    """SIGTERM, bounded wait, then SIGKILL; only pids whose command line holds marker.

    Processes not in pids but naming marker (unrecorded children) are stopped too.
    """
    live = {n: p for n, p in pids.items() if _pid_alive(p, marker)}
    known = set(live.values())
    live.update({n: p for n, p in _marked_pids(marker).items() if p not in known})
    for pid in live.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_WAIT_S
    while time.monotonic() < deadline and any(_pid_alive(p, marker) for p in live.values()):
        time.sleep(0.05)
    for name, pid in live.items():
        if _pid_alive(pid, marker):
            log.warning("%s (pid %d) ignored SIGTERM for %.0f s: killing it", name, pid, STOP_WAIT_S)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return [f"stopped {n} (pid {p})" for n, p in live.items()]


class LocalBackend(Backend):
    name = "local"

    def __init__(self) -> None:
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._marker = ""
        self._links_plan: linkapply.LinksPlan | None = None
        self._links: linkemu.DelayLineHandle | None = None
        self._links_cgroup: dict[str, Callable[[], None]] = {}
        self._run_id = ""

    def make_layout(self, net: Network, run_dir: Path) -> Layout:
        self._marker = str(run_dir)  # from here on, a cleanup can sweep by the run directory
        names = all_names(net)
        if len(names) > LAST_IP - FIRST_IP + 1:
            raise InputError(f"scenario {net.source}: the local backend has {LAST_IP - FIRST_IP + 1} "
                             f"loopback addresses; the network needs {len(names)}")
        ips = [f"127.0.0.{FIRST_IP + i}" for i in range(len(names))]
        return Layout(run_dir, pick_ports(ips), tuple(zip(names, ips, strict=True)))

    def plan_shaping(self, net: Network) -> tuple[ShapingInForce, ...]:
        self._links_plan = linkapply.check(net, self.name)  # [links]: refused here if the host cannot
        plans = []
        for name, shaping in [(n.name, n.shaping) for n in net.nodes] + [(s.name, s.shaping) for s in net.fileservers]:
            if not shaping.requested:
                continue
            if not shaping.optional:
                raise InputError(
                    f"scenario {net.source}: node {name} asks for link shaping, which needs root and a "
                    "network namespace per node; the local backend runs plain processes on 127.0.0.x. "
                    "Use --backend docker, or set optional = true in its [shaping] table to run unshaped.")
            kinds = [k for k, v in (("rate", shaping.rate_mbit), ("loss", shaping.loss_percent),
                                    ("latency", shaping.latency_ms)) if v is not None]
            log.warning("%s: shaping (%s) skipped: not possible with the local backend", name, ", ".join(kinds))
            plans.append(ShapingInForce(name, skipped=tuple(kinds)))
        return tuple(plans)

    def _spawn(self, name: str, argv: list[str], cwd: Path) -> int:
        out = (cwd / "stdout.log").open("ab")
        try:
            proc = spawn(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                         cwd=cwd, start_new_session=True,  # Ctrl-C goes to us, we stop them
                         preexec_fn=self._links_cgroup.get(name))  # [links]: the node's cgroup
        finally:
            out.close()
        self._procs[name] = proc
        return proc.pid

    def start(self, net: Network, layout: Layout, keys: Mapping[str, Keys], binaries: Mapping[Binary, Path],
              run_id: str, shaping: tuple[ShapingInForce, ...]) -> RunningNetwork:
        self._marker = str(layout.run_dir)
        self._run_id = run_id
        self._links = linkapply.start_local(net, layout, run_id, self._links_plan)  # before tor: bootstrap too
        if self._links is not None:
            root = linkapply.cgroup_root()
            assert root is not None
            self._links_cgroup = {n: linkapply.enter_cgroup(root / linkapply.node_cgroup(run_id, n))
                                  for n, _ in layout.ips}
        p = layout.ports
        servers = []
        for s in net.fileservers:
            ip = layout.ip(s.name)
            pid = self._spawn(s.name, [sys.executable, str(Path(clients.__file__)), "serve", "--bind", ip,
                                       "--port", str(p.http_port), "--run-dir", str(layout.run_dir)],
                              layout.node_dir(s.name))
            servers.append(ServerInfo(s.name, ip, p.http_port, pid=pid))
        nodes = []
        for n in net.nodes:
            ip = layout.ip(n.name)
            pid = self._spawn(n.name, [str(binaries[n.binary]), "-f", str(layout.torrc(n.name))],
                              layout.node_dir(n.name))
            nodes.append(NodeInfo(
                n.name, n.role, ip, p.control_port, layout.data_dir(n.name) / "control_auth_cookie",
                layout.data_dir(n.name), layout.log_file(n.name), keys[n.name].fingerprint, n.scheduler,
                n.binary, socks=(ip, p.socks_port) if n.role.value == "client" else None, pid=pid))
        log.info("started %d tor processes and %d file servers on 127.0.0.%d-%d, ports %d-%d",
                 len(nodes), len(servers), FIRST_IP, FIRST_IP + len(layout.ips) - 1, p.base, p.base + 4)
        return RunningNetwork(net.name, run_id, self.name, layout.run_dir, net.source, tuple(nodes),
                              tuple(servers), shaping)

    def dead(self, running: RunningNetwork) -> list[str]:
        marker = str(running.run_dir)
        members = [(n.name, n.pid) for n in running.nodes] + [(s.name, s.pid) for s in running.servers]
        return [name for name, pid in members if pid and not _pid_alive(pid, marker)] + \
            linkemu.dead_lines(running.run_dir)

    def stop(self) -> None:
        if self._links is not None:
            linkemu.stop(self._links)  # its rules first, while the delay line still holds packets
            self._links = None
        _stop_pids({n: p.pid for n, p in self._procs.items()}, self._marker)
        for proc in self._procs.values():
            try:
                proc.wait(timeout=STOP_WAIT_S)  # reap: no zombies left behind
            except subprocess.TimeoutExpired:
                log.warning("pid %d did not exit", proc.pid)
        self._procs.clear()
        if self._links_cgroup:
            linkapply.remove_cgroups(self._run_id)
            self._links_cgroup = {}

    @staticmethod
    def teardown(running: RunningNetwork) -> list[str]:
        members = [(n.name, n.pid) for n in running.nodes] + [(s.name, s.pid) for s in running.servers]
        pids = {name: pid for name, pid in members if pid}
        links = linkemu.stop_all(running.run_dir)
        return links + _stop_pids(pids, str(running.run_dir)) + linkapply.remove_cgroups(running.run_id)
