"""A download still in flight when the phase's time is up ends as CUT_OFF at that moment
(censored, as a Shadow experiment's streams end at its stop time), not minutes later."""
from __future__ import annotations

import socket
import struct
import threading
import time

from harness.traffic import clients


def _slow_proxy(bytes_per_s: int) -> tuple[str, int]:
    """A SOCKS5 proxy (no auth) that answers each CONNECT with a body dribbled out slowly."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()

    def handle(c: socket.socket) -> None:
        with c:
            c.recv(3)
            c.sendall(b"\x05\x00")
            head = c.recv(4)
            c.recv(4 if head[3] == 1 else c.recv(1)[0])
            c.recv(2)
            c.sendall(b"\x05\x00\x00\x01" + socket.inet_aton("127.0.0.1") + struct.pack(">H", 0))
            size = int(c.recv(4096).decode().split("/bytes/")[1].split()[0])
            try:
                c.sendall(b"HTTP/1.0 200 OK\r\n\r\n")
                for _ in range(0, size, bytes_per_s // 10):
                    c.sendall(b"x" * (bytes_per_s // 10))
                    time.sleep(0.1)
            except OSError:
                return

    def serve() -> None:
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(c,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return srv.getsockname()


def test_a_download_in_flight_at_the_cutoff_ends_there_as_cut_off() -> None:
    socks = _slow_proxy(10_000)  # 1 MB at 10 kB/s: 100 s without the cutoff
    t0 = time.monotonic()
    d = clients.fetch(socks, ("127.0.0.1", 9), 1_000_000, cutoff=t0 + 1.5)
    took = time.monotonic() - t0
    assert d.outcome == clients.Outcome.CUT_OFF.value and d.ttlb_s is None
    assert d.ttfb_s is not None and 0 < d.received < 1_000_000  # what it had is kept
    assert 1.4 < took < 30.0  # cut off near 1.5 s, not after the 100 s the body would take


def test_a_download_that_finishes_before_the_cutoff_is_ok() -> None:
    socks = _slow_proxy(1_000_000)
    d = clients.fetch(socks, ("127.0.0.1", 9), 200_000, cutoff=time.monotonic() + 20)
    assert d.outcome == "ok" and d.received == 200_000
