"""Fixtures shared by the unit tests: a real SOCKS5 proxy and file server on loopback.

The traffic clients (harness.traffic) speak SOCKS5 to a client's tor; here the proxy is a
few lines that connect straight to the target, so downloads run for real without tor.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from harness.traffic import clients


def _socks_proxy(stop: threading.Event) -> tuple[socket.socket, list[tuple[str, int]]]:
    """A minimal SOCKS5 CONNECT proxy standing in for tor's SocksPort (loopback only)."""
    lsock = socket.create_server(("127.0.0.1", 0))
    seen: list[tuple[str, int]] = []

    def pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                b.shutdown(socket.SHUT_WR)  # pass the EOF on (close() would not, another thread reads b)

    def handle(c: socket.socket) -> None:
        c.recv(3)
        c.sendall(b"\x05\x00")
        head = c.recv(4)
        host = socket.inet_ntoa(c.recv(4)) if head[3] == 1 else c.recv(c.recv(1)[0]).decode()
        port = struct.unpack(">H", c.recv(2))[0]
        seen.append((host, port))
        up = socket.create_connection((host, port))
        c.sendall(b"\x05\x00\x00\x01" + socket.inet_aton("127.0.0.1") + b"\0\0")
        threading.Thread(target=pipe, args=(c, up), daemon=True).start()
        threading.Thread(target=pipe, args=(up, c), daemon=True).start()

    def accept() -> None:
        lsock.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = lsock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=handle, args=(c,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return lsock, seen


@pytest.fixture
def proxy_and_server() -> Iterator[tuple[tuple[str, int], tuple[str, int], list[tuple[str, int]]]]:
    stop = threading.Event()
    server = clients.make_server("127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    lsock, seen = _socks_proxy(stop)
    yield lsock.getsockname(), server.server_address[:2], seen
    stop.set()
    server.shutdown()
    server.server_close()
    lsock.close()
