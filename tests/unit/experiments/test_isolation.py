"""circuit_per_download: each download authenticates with its own SOCKS user name (tor
isolates circuits by it), and a proxy without auth still works."""

from __future__ import annotations

import socket
import struct
import threading
from pathlib import Path

from harness.config import parse_scenario
from harness.experiments import population, sample
from harness.traffic import clients


def _auth_proxy(users: list[str]) -> tuple[str, int]:
    """A SOCKS5 proxy that insists on username/password and answers each CONNECT with a
    tiny HTTP response of the requested size."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()

    def handle(c: socket.socket) -> None:
        with c:
            assert c.recv(3) == b"\x05\x01\x02"
            c.sendall(b"\x05\x02")
            ver, ulen = c.recv(2)
            users.append(c.recv(ulen).decode())
            plen = c.recv(1)[0]
            c.recv(plen)
            c.sendall(b"\x01\x00")
            head = c.recv(4)
            c.recv(4 if head[3] == 1 else c.recv(1)[0])
            c.recv(2)
            c.sendall(b"\x05\x00\x00\x01" + socket.inet_aton("127.0.0.1") + struct.pack(">H", 0))
            req = c.recv(4096).decode()
            size = int(req.split("/bytes/")[1].split()[0])
            c.sendall(b"HTTP/1.0 200 OK\r\n\r\n" + b"x" * size)

    def serve() -> None:
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(c,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return srv.getsockname()


def test_each_download_gets_its_own_user_name(tmp_path: Path) -> None:
    users: list[str] = []
    socks = _auth_proxy(users)
    out = tmp_path / "d.jsonl"
    n = clients.run_client(socks, ("127.0.0.1", 9), "perf", out, client="c0", duration_s=5, pause_scale=0.0,
                           max_downloads=3, seed=4, circuit_per_download=True)
    assert n == 3
    assert users == ["c0-4-0", "c0-4-1", "c0-4-2"]
    assert all(d.outcome == "ok" for d in clients.read_results(out))


def test_sampled_scenarios_ask_for_a_circuit_per_download() -> None:
    net = parse_scenario(sample.sample(population.BUNDLED, sample.SampleSpec(seed=1)))
    assert net.traffic.circuit_per_download is True
    assert parse_scenario({**sample.sample(population.BUNDLED, sample.SampleSpec(seed=1)),
                           "traffic": {}}).traffic.circuit_per_download is False
