"""A real tor process for the control tests: a relay with DisableNetwork 1.

DisableNetwork keeps it off the network (no listeners but the control port), while it
still has a relay fingerprint, emits BW every second and answers every GETINFO/GETCONF
the collector uses. Ports come from this area's range (23000-23999).
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
from pathlib import Path

TOR = "/usr/bin/tor"


def _free_port() -> int:
    for _ in range(200):
        port = random.randint(23100, 23999)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 23100-23999")


class TorProcess:
    """Start, kill and restart one tor with a fixed DataDirectory and control port."""

    def __init__(self, workdir: Path, *, control_socket: bool = False,
                 hashed_password: str | None = None, testing: bool = False) -> None:
        self.dir = workdir
        self.control_port = _free_port()
        self.socket_path = workdir / "control.sock" if control_socket else None
        self.cookie = workdir / "data" / "control_auth_cookie"
        self.log = workdir / "tor.log"
        lines = [f"DataDirectory {workdir / 'data'}",
                 f"ControlPort 127.0.0.1:{self.control_port}",
                 "SocksPort 0", f"ORPort 127.0.0.1:{_free_port()}",
                 "DisableNetwork 1", "PublishServerDescriptor 0", "AssumeReachable 1",
                 f"Log notice file {self.log}"]
        if hashed_password:
            lines.append(f"HashedControlPassword {hashed_password}")
        else:
            lines.append("CookieAuthentication 1")
        if testing:  # CONN_BW and CELL_STATS exist only in testing networks
            lines += ["TestingTorNetwork 1", "TestingEnableConnBwEvent 1", "TestingEnableCellStatsEvent 1",
                      f"DirAuthority test orport={_free_port()} no-v2 v3ident={'0' * 40} "
                      f"127.0.0.1:{_free_port()} {'0' * 40}"]  # never contacted: DisableNetwork
        if self.socket_path:
            lines.append(f"ControlSocket {self.socket_path}")
        self.torrc = workdir / "torrc"
        self.torrc.write_text("\n".join(lines) + "\n")
        (workdir / "data").mkdir(mode=0o700, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> TorProcess:
        self.proc = subprocess.Popen([TOR, "-f", str(self.torrc)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tor exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.control_port), timeout=1):
                    if self.cookie.exists() or not self.uses_cookie:
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"tor's control port did not open within {timeout} s:\n{self.tail()}")

    @property
    def uses_cookie(self) -> bool:
        return "CookieAuthentication 1" in self.torrc.read_text()

    def kill(self) -> None:
        """SIGKILL, as a crash would: no clean close of the control connection."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text().splitlines()[-n:])
        except OSError:
            return "(no log)"
