"""File servers and clients that download through Tor's SOCKS port, timing each download.

Stdlib only and runnable as a script (``python3 traffic.py serve|run``), because the same
file is copied into the node image and runs inside containers. Each download records
TTFB (request start -> first response byte) and TTLB (-> last byte), as in the paper's
web/bulk/perf clients; results are JSON lines stored with the run.
"""

from __future__ import annotations

import argparse
import enum
import json
import logging
import random
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

log = logging.getLogger(__name__)

KIB = 1024
MIB = 1024 * KIB
CHUNK = 64 * KIB
MAX_SIZE = 1024 * MIB


class TrafficError(Exception):
    """A download failed (SOCKS refused, connection reset, short body)."""


@dataclass(frozen=True)
class ProfileSpec:
    """One of the paper's client behaviours: what to fetch and how long to think between."""

    sizes: tuple[int, ...]       # cycled through
    pause_s: tuple[float, float]  # uniform think time between downloads


PROFILES: dict[str, ProfileSpec] = {
    "web": ProfileSpec((320 * KIB,), (1.0, 60.0)),
    "bulk": ProfileSpec((5 * MIB,), (0.0, 0.0)),
    "perf": ProfileSpec((50 * KIB, 1 * MIB, 5 * MIB), (60.0, 120.0)),
}


class Outcome(enum.Enum):
    OK = "ok"
    FAILED = "failed"
    CUT_OFF = "cutoff"  # still in flight when the phase's time was up: censored, not failed


@dataclass(frozen=True)
class Download:
    """One timed download (times in seconds; start is wall clock for joining with events)."""

    client: str
    profile: str
    size: int
    start: float
    ttfb_s: float | None
    ttlb_s: float | None
    received: int
    outcome: str
    error: str = ""


# ---------------------------------------------------------------- server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        parts = self.path.strip("/").split("/")
        if len(parts) != 2 or parts[0] != "bytes" or not parts[1].isdigit() or int(parts[1]) > MAX_SIZE:
            self.send_error(404, "use /bytes/N with N <= 1 GiB")
            return
        size = int(parts[1])
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        block = b"\0" * CHUNK
        left = size
        try:
            while left > 0:
                n = min(left, CHUNK)
                self.wfile.write(block[:n])
                left -= n
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        log.debug("server: " + format, *args)


def make_server(host: str, port: int) -> ThreadingHTTPServer:
    """An HTTP server answering /bytes/N with N zero bytes (call serve_forever)."""
    ThreadingHTTPServer.allow_reuse_address = True
    server = ThreadingHTTPServer((host, port), _Handler)
    server.daemon_threads = True
    return server


# ---------------------------------------------------------------- client


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise TrafficError(f"SOCKS proxy closed the connection after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def _socks5_connect(sock: socket.socket, host: str, port: int, isolation: str | None = None) -> None:
    """SOCKS5 CONNECT; with ``isolation``, authenticate with it as the user name (RFC 1929):
    tor's SocksPort isolates streams by SOCKS credentials (IsolateSOCKSAuth, on by default),
    so each distinct name gets its own circuit."""
    if isolation is None:
        sock.sendall(b"\x05\x01\x00")
        if _recv_exact(sock, 2) != b"\x05\x00":
            raise TrafficError("SOCKS5 proxy refused no-auth")
    else:
        sock.sendall(b"\x05\x01\x02")
        method = _recv_exact(sock, 2)
        if method == b"\x05\x02":
            user = isolation.encode()[:255]
            sock.sendall(b"\x01" + bytes([len(user)]) + user + b"\x01x")
            if _recv_exact(sock, 2)[1] != 0:
                raise TrafficError("SOCKS5 proxy refused the isolation user name")
        elif method != b"\x05\x00":
            raise TrafficError(f"SOCKS5 proxy refused username/password auth (answered {method!r})")
    try:
        addr = b"\x01" + socket.inet_aton(host)
    except OSError:
        addr = b"\x03" + bytes([len(host)]) + host.encode()
    sock.sendall(b"\x05\x01\x00" + addr + struct.pack(">H", port))
    reply = _recv_exact(sock, 4)
    if reply[1] != 0:
        raise TrafficError(f"SOCKS5 connect to {host}:{port} failed with reply code {reply[1]} "
                           "(1 general failure, 4 host unreachable, 5 refused, 6 TTL expired)")
    atyp = reply[3]
    addr_len = _recv_exact(sock, 1)[0] if atyp == 3 else {1: 4, 4: 16}.get(atyp, 0)
    _recv_exact(sock, addr_len + 2)  # bound address and port: unused


class _CutOff(Exception):
    pass


def fetch(socks: tuple[str, int], server: tuple[str, int], size: int, *, client: str = "-",
          profile: str = "-", timeout: float = 120.0, isolation: str | None = None,
          cutoff: float | None = None) -> Download:
    """Download size bytes from server through the SOCKS proxy; never raises for network errors.

    ``cutoff`` (time.monotonic()): a download still running then ends as CUT_OFF, the way a
    Shadow or tornettools experiment's streams end at its stop time."""
    start_wall = time.time()
    t0 = time.monotonic()
    ttfb = None
    received = 0

    def left() -> float:
        if cutoff is None:
            return timeout
        remaining = cutoff - time.monotonic()
        if remaining <= 0:
            raise _CutOff
        return min(timeout, remaining)

    try:
        with socket.create_connection(socks, timeout=left()) as sock:
            _socks5_connect(sock, *server, isolation=isolation)
            sock.sendall(f"GET /bytes/{size} HTTP/1.0\r\nHost: {server[0]}\r\n\r\n".encode())
            head = b""
            while True:
                sock.settimeout(left())
                chunk = sock.recv(CHUNK)
                if not chunk:
                    break
                if ttfb is None:
                    ttfb = time.monotonic() - t0
                if len(head) < 4096 and b"\r\n\r\n" not in head:
                    head += chunk
                    if b"\r\n\r\n" in head:
                        received += len(head.split(b"\r\n\r\n", 1)[1])
                    continue
                received += len(chunk)
        ttlb = time.monotonic() - t0
        if not head.startswith(b"HTTP/1.0 200"):
            status = head.split(b"\r\n", 1)[0]
            raise TrafficError(f"server answered {status!r}")
        if received != size:
            raise TrafficError(f"short body: {received} of {size} bytes")
        return Download(client, profile, size, start_wall, ttfb, ttlb, received, Outcome.OK.value)
    except (_CutOff, OSError, TrafficError) as exc:
        # a socket timeout that ends at the cutoff (left() capped it there) is the cutoff too
        if isinstance(exc, _CutOff) or (isinstance(exc, TimeoutError) and cutoff is not None
                                        and time.monotonic() >= cutoff):
            return Download(client, profile, size, start_wall, ttfb, None, received, Outcome.CUT_OFF.value,
                            "still in flight when the traffic phase's time was up")
        return Download(client, profile, size, start_wall, ttfb, None, received, Outcome.FAILED.value,
                        f"{type(exc).__name__}: {exc}")


def schedule(profile: str, *, pause_scale: float, size_scale: float, seed: int) -> Iterator[tuple[int, float]]:
    """Endless (size, pause after) pairs for a profile, scaled and seeded for repeatability."""
    spec = PROFILES[profile]
    rng = random.Random(seed)
    i = 0
    while True:
        size = max(1, int(spec.sizes[i % len(spec.sizes)] * size_scale))
        pause = rng.uniform(*spec.pause_s) * pause_scale
        yield size, pause
        i += 1


def run_client(socks: tuple[str, int], server: tuple[str, int], profile: str, out: Path, *,
               client: str, duration_s: float, pause_scale: float = 1.0, size_scale: float = 1.0,
               max_downloads: int = 0, seed: int = 0, stop: threading.Event | None = None,
               circuit_per_download: bool = False, cutoff: float | None = None) -> int:
    """Download by profile until duration_s or max_downloads; append JSON lines; return count.

    ``circuit_per_download``: every download on a new circuit (the paper's clients, sec. 4.1),
    through a SOCKS user name unique to this loop and download."""
    deadline = time.monotonic() + duration_s
    stop = stop or threading.Event()
    n = 0
    with out.open("a") as fh:
        for size, pause in schedule(profile, pause_scale=pause_scale, size_scale=size_scale, seed=seed):
            if stop.is_set() or time.monotonic() >= deadline or (max_downloads and n >= max_downloads):
                break
            d = fetch(socks, server, size, client=client, profile=profile,
                      timeout=max(10.0, deadline - time.monotonic() + 30),
                      isolation=f"{client}-{seed}-{n}" if circuit_per_download else None, cutoff=cutoff)
            fh.write(json.dumps(asdict(d)) + "\n")
            fh.flush()
            n += 1
            if stop.wait(min(pause, max(0.0, deadline - time.monotonic()))):
                break
    return n


def read_results(path: Path) -> list[Download]:
    """Downloads stored by run_client, in order."""
    return [Download(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


# ---------------------------------------------------------------- script entry (containers)


def _addr(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="traffic.py", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--bind", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--run-dir", help="ignored: marks the process as belonging to a run (for teardown)")
    c = sub.add_parser("run")
    c.add_argument("--socks", type=_addr, required=True)
    c.add_argument("--server", type=_addr, required=True)
    c.add_argument("--profile", choices=sorted(PROFILES), required=True)
    c.add_argument("--client", required=True)
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--duration", type=float, required=True)
    c.add_argument("--pause-scale", type=float, default=1.0)
    c.add_argument("--size-scale", type=float, default=1.0)
    c.add_argument("--max-downloads", type=int, default=0)
    c.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.cmd == "serve":
        make_server(args.bind, args.port).serve_forever()
        return 0
    n = run_client(args.socks, args.server, args.profile, args.out, client=args.client,
                   duration_s=args.duration, pause_scale=args.pause_scale, size_scale=args.size_scale,
                   max_downloads=args.max_downloads, seed=args.seed)
    print(f"{n} downloads", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
