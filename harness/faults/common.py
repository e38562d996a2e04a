"""What every fault needs: a patched tor under traffic, the store's committed view, figures.

"Committed" is what a reader sees: SQLite shows another connection only committed
transactions. ``Ledger`` samples (highest record id, records up to it) of a run from a
separate connection before each fault; afterwards every sample must still hold exactly
(the store is append-only, so ids never move): that is "committed records lost: 0".
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from harness.config import Network, Profile
from harness.network.running import NodeInfo, RunningNetwork
from harness.traffic import clients as traffic

log = logging.getLogger(__name__)


@dataclass
class Figure:
    """One fault's result: printed as ``name: key=value ...`` and ``goal met`` or why not."""

    name: str
    values: dict[str, object] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def line(self) -> str:
        vals = " ".join(f"{k}={v}" for k, v in self.values.items())
        return f"{self.name}: {vals}\n  " + ("goal met" if self.ok else "MISSED: " + "; ".join(self.problems))


@dataclass
class Lab:
    """A running local network with its patched relay under test and a build's labels."""

    handle: RunningNetwork
    net: Network
    relay: str
    tor: Path
    patch_hash: str
    work: Path

    @property
    def node(self) -> NodeInfo:
        return self.handle.node(self.relay)


@contextlib.contextmanager
def lab(work: Path, *, relay: str = "kist") -> Iterator[Lab]:
    """The default scenario on the local backend with the patched build (cached), and
    its clients downloading for as long as the block runs (failed downloads are fine: the
    faults break circuits)."""
    from harness.build import default_patches_dir, ensure_built
    from harness.config import load_scenario
    from harness.network import up

    build = ensure_built(patches_dir=default_patches_dir())
    net = load_scenario("default")
    net = dataclasses.replace(net, traffic=dataclasses.replace(net.traffic, duration_s=3600.0))
    with up(net, "local", patched=build.tor) as handle:
        stop = threading.Event()
        threads = [threading.Thread(target=_load, args=(handle, net, c.name, work, stop, i), daemon=True)
                   for i, c in enumerate(net.clients) if c.profile is not Profile.NONE]
        for t in threads:
            t.start()
        try:
            yield Lab(handle, net, relay, build.tor, build.series_hash, work)
        finally:
            stop.set()
            for t in threads:
                t.join(30)


def _load(handle: RunningNetwork, net: Network, client: str, work: Path, stop: threading.Event, seed: int) -> None:
    spec = next(c for c in net.clients if c.name == client)
    info = handle.node(client)
    server = handle.servers[0]
    assert info.socks is not None
    while not stop.is_set():  # a client loop ends when its circuits die with a killed relay: start again
        try:
            traffic.run_client(info.socks, (server.host, server.port), spec.profile.value,
                               work / f"downloads.{client}.jsonl", client=client, duration_s=60.0,
                               pause_scale=net.traffic.pause_scale, size_scale=net.traffic.size_scale,
                               seed=seed, stop=stop)
        except Exception as exc:  # noqa: BLE001 - load only; the collector is what is measured
            log.debug("client %s: %s", client, exc)
            stop.wait(1.0)


# -------------------------------------------------------------------------- the relay's process


def restart_argv(pid: int) -> tuple[list[str], str]:
    """The command line and working directory of a running tor: what restarts it as it was."""
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    return [a.decode() for a in argv], os.readlink(f"/proc/{pid}/cwd")


def kill_and_restart(pid: int, down_s: float) -> tuple[int, float, float]:
    """SIGKILL tor (a crash: no goodbye on the control connection), wait, start it again
    from the same torrc and data directory. Returns (new pid, killed at, restarted at)."""
    argv, cwd = restart_argv(pid)
    os.kill(pid, signal.SIGKILL)
    killed = time.time()
    _wait_gone(pid)
    time.sleep(down_s)
    with (Path(cwd) / "stdout.log").open("ab") as out:
        proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    return proc.pid, killed, time.time()


def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return
        time.sleep(0.05)


# -------------------------------------------------------------------------- the store, read aside


def integrity(path: Path) -> str:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        db.close()


class Ledger:
    """Samples of what a store had committed, taken from a separate connection."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.samples: list[tuple[int, int]] = []  # (max id, records with id <= it)

    def sample(self) -> tuple[int, int]:
        try:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
        except sqlite3.Error:
            return (0, 0)
        try:
            row = db.execute("SELECT coalesce(max(id), 0), count(*) FROM records").fetchone()
        except sqlite3.Error:  # not created yet
            row = (0, 0)
        finally:
            db.close()
        self.samples.append((int(row[0]), int(row[1])))
        return self.samples[-1]

    def lost(self) -> int:
        """Records committed at some sample and missing now (0 when nothing was lost)."""
        db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
        try:
            return sum(max(0, n - db.execute("SELECT count(*) FROM records WHERE id <= ?", (top,)).fetchone()[0])
                       for top, n in self.samples)
        finally:
            db.close()


def heartbeat_holes(path: Path, run_id: str, gaps: list[tuple[float, float]], *, hole_s: float = 3.5
                    ) -> list[tuple[float, float]]:
    """Silences in the relay's BW events (tor sends one a second) longer than hole_s that no
    recorded gap covers: events lost without a record saying so."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        ts = [r[0] for r in db.execute("SELECT r.ts FROM records r JOIN contexts c ON r.ctx = c.id "
                                       "WHERE r.kind = 'BW' AND c.run_id = ? ORDER BY r.ts", (run_id,))]
    finally:
        db.close()
    holes = []
    for a, b in zip(ts, ts[1:], strict=False):
        if b - a > hole_s and not any(s - 2.0 <= b and a <= e + 2.0 for s, e in gaps):  # overlaps a gap
            holes.append((a, b))
    return holes
