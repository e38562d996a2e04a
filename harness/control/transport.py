"""Reaching a control port: TCP, a unix ControlSocket, or anything yielding a socket.

A :class:`Transport` turns an address into a *connected* stem ``ControlSocket``, and can
do so again after the connection drops (the collector reconnects through it). The SSH
tunnel of ``harness.remote`` implements the same protocol; the simplest way is
:class:`SocketFactoryTransport` around a function returning a paramiko channel
(``direct-tcpip`` or ``direct-streamlocal@openssh.com``), which stem can drive like a
socket.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import stem
import stem.socket

from harness.errors import InputError, StepError

log = logging.getLogger(__name__)


class Transport(Protocol):
    """What the collector needs from a way of reaching tor."""

    def describe(self) -> str:
        """Where this goes, for messages (no secrets)."""
        ...

    def connect(self) -> stem.socket.ControlSocket:
        """A connected control socket; raises StepError when tor cannot be reached."""
        ...

    def close(self) -> None:
        """Release what the transport holds (a tunnel); sockets it made are closed by their owner."""
        ...


class TcpTransport:
    """A control port on host:port (keep it on loopback or behind a tunnel).

    Connects with ``socket.create_connection`` rather than stem's ControlPort, which is
    IPv4-only and has no connect timeout.
    """

    def __init__(self, host: str, port: int, connect_timeout: float = 10.0) -> None:
        self.host, self.port, self.connect_timeout = host, port, connect_timeout

    def describe(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def _socket(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        sock.settimeout(None)  # stem's reader blocks; the collector's watchdog bounds silence
        return sock

    def connect(self) -> stem.socket.ControlSocket:
        try:
            return _FactorySocket(self._socket, self.describe(), localhost=self.host in _LOOPBACK)
        except stem.SocketError as exc:
            raise StepError(f"cannot reach tor's control port at {self.describe()}: {exc}") from exc

    def close(self) -> None:
        pass


_LOOPBACK = ("127.0.0.1", "::1", "localhost")


class UnixTransport:
    """A tor ``ControlSocket`` path."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def describe(self) -> str:
        return str(self.path)

    def connect(self) -> stem.socket.ControlSocket:
        try:
            return stem.socket.ControlSocketFile(str(self.path))
        except stem.SocketError as exc:
            raise StepError(f"cannot reach tor's control socket {self.path}: {exc}") from exc

    def close(self) -> None:
        pass


class _FactorySocket(stem.socket.ControlSocket):
    """A stem ControlSocket over whatever socket-like object a factory returns."""

    def __init__(self, factory: Callable[[], Any], description: str, *, localhost: bool = False) -> None:
        super().__init__()
        self._factory = factory
        self._description = description
        self._localhost = localhost
        self.connect()

    def is_localhost(self) -> bool:
        return self._localhost

    def _make_socket(self) -> Any:
        try:
            return self._factory()
        except (OSError, ConnectionError) as exc:
            raise stem.SocketError(f"{self._description}: {exc}") from exc


class SocketFactoryTransport:
    """Any function returning a connected socket-like object (makefile/shutdown/close).

    The seam for ``harness.remote``: an SSH tunnel passes a function opening a paramiko
    channel to the relay's control port; ``close`` then closes the SSH connection.
    """

    def __init__(self, factory: Callable[[], Any], description: str,
                 on_close: Callable[[], None] | None = None) -> None:
        self.factory, self.description, self.on_close = factory, description, on_close

    def describe(self) -> str:
        return self.description

    def connect(self) -> stem.socket.ControlSocket:
        try:
            return _FactorySocket(self.factory, self.description)
        except stem.SocketError as exc:
            raise StepError(f"cannot reach tor's control port via {self.description}: {exc}") from exc

    def close(self) -> None:
        if self.on_close:
            self.on_close()


def parse_control_address(text: str) -> TcpTransport | UnixTransport:
    """``HOST:PORT``, ``PORT`` (loopback) or a socket path → a transport."""
    if "/" in text:
        return UnixTransport(Path(text))
    host, sep, port_text = text.rpartition(":")
    host = host.strip("[]") if sep else "127.0.0.1"
    try:
        port = int(port_text)
        if not 0 < port < 65536:
            raise ValueError
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM) if host else None
    except (ValueError, OSError) as exc:
        raise InputError(f"--control {text!r} is neither HOST:PORT nor a socket path: give e.g. "
                         "127.0.0.1:9051 or /run/tor/control.") from exc
    if not host:
        raise InputError(f"--control {text!r} has no host: give e.g. 127.0.0.1:9051.")
    return TcpTransport(host, port)
