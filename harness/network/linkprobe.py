"""Measure a link as TCP and UDP see it: round-trip time, loss, throughput.

Used by the link integration tests and by `python -m harness.network.bench --links`.
Every measurement is bounded in packets and time and talks only to the two addresses it
is given (loopback addresses or addresses inside this run's own network namespaces).
"""

from __future__ import annotations

import math
import socket
import statistics
import struct
import threading
import time
from dataclasses import dataclass

TCP_INFO_FMT = "B" * 8 + "I" * 24   # struct tcp_info up to tcpi_total_retrans (linux/tcp.h)


@dataclass(frozen=True)
class RttResult:
    samples: int
    median_ms: float
    stdev_ms: float
    min_ms: float
    tcp_info_rtt_ms: float   # the kernel's smoothed RTT of the client socket (tcpi_rtt)
    iqr_ms: float = 0.0      # q3 - q1: a spread that a few scheduling stalls of a busy machine do not inflate


@dataclass(frozen=True)
class LossResult:
    sent: int
    received: int

    @property
    def lost_fraction(self) -> float:
        return 1 - self.received / self.sent if self.sent else 0.0


@dataclass(frozen=True)
class RateResult:
    nbytes: int
    seconds: float

    @property
    def mbit_s(self) -> float:
        return self.nbytes * 8 / self.seconds / 1e6 if self.seconds else 0.0


def tcp_info(sock: socket.socket) -> dict[str, int]:
    """rtt (µs), rttvar, snd_cwnd, snd_mss of a connected TCP socket."""
    raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, struct.calcsize(TCP_INFO_FMT))
    v = struct.unpack(TCP_INFO_FMT, raw[:struct.calcsize(TCP_INFO_FMT)])
    # after the 8 bytes: rto ato snd_mss rcv_mss unacked sacked lost retrans fackets last_data_sent
    # last_ack_sent last_data_recv last_ack_recv pmtu rcv_ssthresh rtt rttvar snd_ssthresh snd_cwnd ...
    ints = v[8:]
    return {"snd_mss": ints[2], "rtt_us": ints[15], "rttvar_us": ints[16], "snd_cwnd": ints[18],
            "total_retrans": ints[23]}


def _server(listener: socket.socket, handler: str, stop: threading.Event) -> None:
    listener.settimeout(10)
    try:
        conn, _ = listener.accept()
    except OSError:
        return
    with conn:
        conn.settimeout(30)
        try:
            while not stop.is_set():
                data = conn.recv(65536)
                if not data:
                    return
                if handler == "echo":
                    conn.sendall(data)
        except OSError:
            return


def _listen(addr: str, port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(1)
    return s


def tcp_rtt(src: str, dst: str, port: int, count: int = 50, interval_s: float = 0.01) -> RttResult:
    """Ping-pong one byte over TCP from src to dst:port (TCP_NODELAY), count times."""
    stop = threading.Event()
    lst = _listen(dst, port)
    th = threading.Thread(target=_server, args=(lst, "echo", stop), daemon=True)
    th.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as c:
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c.bind((src, 0))
            c.settimeout(10)
            c.connect((dst, port))
            rtts = []
            for _ in range(count):
                t0 = time.perf_counter()
                c.sendall(b"x")
                if not c.recv(1):
                    break
                rtts.append((time.perf_counter() - t0) * 1e3)
                time.sleep(interval_s)
            info = tcp_info(c)
    finally:
        stop.set()
        lst.close()
        th.join(5)
    q = statistics.quantiles(rtts, n=4) if len(rtts) >= 4 else [0.0, 0.0, 0.0]
    return RttResult(len(rtts), statistics.median(rtts), statistics.pstdev(rtts), min(rtts), info["rtt_us"] / 1e3,
                     q[2] - q[0])


def udp_loss(src: str, dst: str, port: int, count: int = 10_000, pps: float = 5000.0,
             settle_s: float = 1.0) -> LossResult:
    """Send count numbered datagrams src -> dst:port at pps; count distinct ones that arrived."""
    got: set[int] = set()
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    rx.bind((dst, port))
    rx.settimeout(0.2)
    done = threading.Event()

    def _recv() -> None:
        while True:
            try:
                data = rx.recv(64)
            except TimeoutError:
                if done.is_set():
                    return
                continue
            except OSError:
                return
            got.add(struct.unpack("!I", data[:4])[0])

    th = threading.Thread(target=_recv, daemon=True)
    th.start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        tx.bind((src, 0))
        t0 = time.perf_counter()
        for i in range(count):
            tx.sendto(struct.pack("!I", i) + b"\0" * 60, (dst, port))
            ahead = t0 + (i + 1) / pps - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)
    time.sleep(settle_s)
    done.set()
    th.join(5)
    rx.close()
    return LossResult(count, len(got))


def tcp_throughput(src: str, dst: str, port: int, seconds: float = 3.0, warmup_s: float = 1.0) -> RateResult:
    """Bulk TCP src -> dst:port; the rate is counted at the receiver after a warm-up (slow start)."""
    lst = _listen(dst, port)
    counted = [0, 0.0]
    result: list[RateResult] = []

    def _sink() -> None:
        lst.settimeout(10)
        conn, _ = lst.accept()
        with conn:
            conn.settimeout(10)
            t_start = time.perf_counter()
            t_count = t_start + warmup_s
            nbytes = 0
            first = None
            while True:
                try:
                    data = conn.recv(1 << 20)
                except OSError:
                    break
                if not data:
                    break
                now = time.perf_counter()
                if now >= t_count:
                    if first is None:
                        first = now
                    else:
                        nbytes += len(data)
                counted[0], counted[1] = nbytes, (now - first) if first else 0.0
            result.append(RateResult(int(counted[0]), float(counted[1])))

    th = threading.Thread(target=_sink, daemon=True)
    th.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as c:
            c.bind((src, 0))
            c.settimeout(10)
            c.connect((dst, port))
            buf = b"\0" * 65536
            end = time.perf_counter() + warmup_s + seconds
            while time.perf_counter() < end:
                c.sendall(buf)
    finally:
        th.join(15)
        lst.close()
    return result[0] if result else RateResult(0, 0.0)


def binomial_interval(n: int, p: float, z: float = 2.576) -> tuple[float, float]:
    """The 99 % (z = 2.576) normal-approximation interval for the lost fraction of n trials at p."""
    half = z * math.sqrt(p * (1 - p) / n)
    return max(0.0, p - half), min(1.0, p + half)
