"""A userspace delay line on NFQUEUE: per address pair latency, jitter, loss and rate.

Why this exists: the kernel on this project's machines has no sch_netem, so a packet
cannot be held in the kernel. iptables sends the run's packets to an NFQUEUE; this
process reads each packet's IPv4 header (only the first 20 bytes are copied), decides
its fate from the (source, destination) pair's parameters and gives the verdict when the
packet is due. The packet itself never leaves the kernel and TCP stays end to end: the
sender's TCP_INFO describes the emulated path, which a TCP proxy could not give.

Per direction of a pair, in this order: random loss (seeded), serialisation at `rate`
behind the packets already queued (tail drop past `queue_ms` of backlog, as a router
would), then the one-way latency plus a normal jitter offset that holds for a while (see
Schedule._jittered), never earlier than the previous packet of the same direction (no
reordering: TCP on the Internet sees little).

    python -m harness.network.delayline CONFIG.json

CONFIG: {"queue": N, "seed": S, "stats": PATH, "links": [{"src": ip, "dst": ip,
"latency_ms": .., "jitter_ms": .., "loss_percent": .., "rate_mbit": ..}, ...],
"marks": {"MARK": ip, ...}} (marks: see Endpoints; only the local backend needs them).
Prints "ready queue=N" once bound; SIGTERM/SIGINT: every held packet is accepted at
once, the statistics are written to "stats" and the process exits 0.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import os
import random
import select
import signal
import socket
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

COPY_BYTES = 40            # the IPv4 header (addresses, total length) and the TCP/UDP ports
QUEUE_MAXLEN = 200_000     # packets held in the kernel at once (300 ms at 1 Gbit/s of 1500 B is 25,000)
DEFAULT_QUEUE_MS = 100.0   # backlog behind a rate limit before tail drop
SLACK_S = 20e-6            # release what is due within this much of now in one batch
ERROR_SAMPLES = 200_000
JITTER_PERIOD_MS = 20.0    # shortest time a jitter offset holds (see Schedule._jittered)    # delay-error samples kept (reservoir) for p50/p99


@dataclass(frozen=True)
class PairParams:
    """One direction of one link, as the delay line applies it."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_percent: float = 0.0
    rate_mbit: float | None = None
    queue_ms: float = DEFAULT_QUEUE_MS


class Schedule:
    """The pure decision part: given a packet's pair, size and arrival time, when (or whether) it goes.

    Kept free of I/O so its arithmetic is unit-tested without a queue.
    """

    def __init__(self, pairs: Mapping[tuple[bytes, bytes], PairParams], seed: int = 0) -> None:
        self.pairs = dict(pairs)
        self.rng = random.Random(seed)
        self._busy_until: dict[tuple[bytes, bytes], float] = {}
        self._last_release: dict[tuple[bytes, bytes], float] = {}
        self._offset: dict[tuple[bytes, bytes], tuple[float, float]] = {}
        self.counts: dict[tuple[bytes, bytes], list[int]] = {k: [0, 0, 0, 0] for k in self.pairs}  # pkts, bytes,
        # lost, tail-dropped

    def _jittered(self, key: tuple[bytes, bytes], p: PairParams, now: float) -> float:
        """Latency plus a normal offset that holds for a period of max(20 ms, 4 jitter).

        A fresh offset per packet would either reorder packets (netem's default, which TCP
        reads as loss) or, held in order, push every packet of a busy flow towards the
        largest recent delay: the mean would no longer be the configured latency. An
        offset held for a period much longer than the jitter keeps both order and mean.
        """
        off, until = self._offset.get(key, (0.0, -1.0))
        if now >= until:
            off = max(-p.latency_ms, self.rng.gauss(0.0, p.jitter_ms))
            until = now + max(JITTER_PERIOD_MS, 4 * p.jitter_ms) / 1000.0
            self._offset[key] = (off, until)
        return p.latency_ms + off

    def decide(self, key: tuple[bytes, bytes], size: int, now: float) -> float | None:
        """Release time (monotonic s) for the packet, or None to drop it; now for pairs not shaped."""
        p = self.pairs.get(key)
        if p is None:
            return now
        c = self.counts[key]
        c[0] += 1
        c[1] += size
        if p.loss_percent and self.rng.random() * 100.0 < p.loss_percent:
            c[2] += 1
            return None
        t = now
        if p.rate_mbit:
            start = max(now, self._busy_until.get(key, 0.0))
            if start - now > p.queue_ms / 1000.0:
                c[3] += 1
                return None
            t = start + size * 8 / (p.rate_mbit * 1e6)
            self._busy_until[key] = t
        delay = p.latency_ms
        if p.jitter_ms:
            delay = self._jittered(key, p, now)
        t = max(t + delay / 1000.0, self._last_release.get(key, 0.0))
        self._last_release[key] = t
        return t


class Endpoints:
    """Which nodes a packet travels between, where its addresses do not say.

    tor does not bind OutboundBindAddress for a loopback destination (connection.c,
    connection_connect: `if (!tor_addr_is_loopback(addr))`), so on the local backend every
    tor-to-tor connection leaves from 127.0.0.1. The local backend runs each node in a
    cgroup of its own and an OUTPUT rule marks the node's packets with its number; the
    first packet of a connection (from 127.0.0.1, marked) tells the real source, and the
    replies (to 127.0.0.1) are matched by the reversed address/port 4-tuple.
    """

    def __init__(self, marks: Mapping[int, bytes], anon: bytes) -> None:
        self.marks = dict(marks)
        self.anon = anon
        self.conns: dict[tuple[bytes, bytes, bytes], bytes] = {}

    def key(self, hdr: bytes, mark: int) -> tuple[bytes, bytes]:
        src, dst = hdr[12:16], hdr[16:20]
        anon = self.anon
        if src != anon and dst != anon:
            return src, dst
        ihl = (hdr[0] & 15) * 4
        sport, dport = hdr[ihl:ihl + 2], hdr[ihl + 2:ihl + 4]
        if src == anon:
            real = self.marks.get(mark)
            if real is None:
                return src, dst
            self.conns[(dst, dport, sport)] = real
            return real, dst
        peer = self.conns.get((src, sport, dport))
        return (src, peer) if peer is not None else (src, dst)


def parse_config(data: Mapping[str, Any]) -> tuple[int, int, dict[tuple[bytes, bytes], PairParams]]:
    pairs: dict[tuple[bytes, bytes], PairParams] = {}
    for link in data["links"]:
        key = (socket.inet_aton(link["src"]), socket.inet_aton(link["dst"]))
        pairs[key] = PairParams(float(link.get("latency_ms", 0.0)), float(link.get("jitter_ms", 0.0)),
                                float(link.get("loss_percent", 0.0)), link.get("rate_mbit"),
                                float(link.get("queue_ms", DEFAULT_QUEUE_MS)))
    return int(data["queue"]), int(data.get("seed", 0)), pairs


class Stats:
    """Delay error (release time - due time) as a reservoir sample, for p50/p99."""

    def __init__(self) -> None:
        self.errors: list[float] = []
        self.n = 0
        self._rng = random.Random(1)

    def add(self, err: float) -> None:
        self.n += 1
        if len(self.errors) < ERROR_SAMPLES:
            self.errors.append(err)
        else:
            j = self._rng.randrange(self.n)
            if j < ERROR_SAMPLES:
                self.errors[j] = err


def _percentile(xs: list[float], q: float) -> float:
    if not xs:
        return 0.0
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def stats_dict(sched: Schedule, st: Stats) -> dict[str, Any]:
    links = [{"src": socket.inet_ntoa(k[0]), "dst": socket.inet_ntoa(k[1]), "packets": c[0], "bytes": c[1],
              "lost": c[2], "tail_dropped": c[3]} for k, c in sched.counts.items() if c[0]]
    return {"links": links, "delay_error_p50_ms": _percentile(st.errors, 0.5) * 1e3,
            "delay_error_p99_ms": _percentile(st.errors, 0.99) * 1e3, "delay_error_samples": len(st.errors),
            "released": st.n}


REALTIME_PRIORITY = 10


def _realtime() -> str:
    """SCHED_FIFO for this process, else nice -10, else as is.

    A link must not wait for a compiler to yield the CPU: on a busy 2-core machine the
    delay error's p99 is several milliseconds at normal priority. The kernel's RT
    throttling (95 % of each second) keeps a runaway from starving the machine.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(REALTIME_PRIORITY))
        return f"SCHED_FIFO {REALTIME_PRIORITY}"
    except (OSError, AttributeError):
        pass
    try:
        os.nice(-10)
        return "nice -10"
    except OSError:
        return "normal (no CAP_SYS_NICE)"


class Queue:
    """One NFQUEUE on fnfqueue's netlink layer, driven from a single thread.

    fnfqueue's Connection reads in a thread of its own and hands packets over through a
    condition variable; with a releasing thread besides, every packet costs GIL hand-offs
    (measured: 14 ms of CPU per second per Mbit/s, 48 Mbit/s at most within 1 ms p99).
    Here one loop polls the socket with the next release time as its timeout, so a packet
    costs one receive share, one lookup and one verdict.
    """

    CHUNK = 64
    BUF = 512   # netlink message of a packet with 20 bytes of payload copied

    def __init__(self, number: int) -> None:
        from fnfqueue._fnfqueue import ffi, lib  # the package's own cffi layer (pinned version)
        self.ffi, self.lib = ffi, lib
        self.conn = ffi.new("struct nfq_connection *")
        if lib.init_connection(self.conn) == -1:
            raise OSError(ffi.errno, os.strerror(ffi.errno))
        os.set_blocking(self.conn.fd, False)
        self._keep: list[Any] = []
        self.free: list[Any] = []
        self._arr = ffi.new("struct nfq_packet*[]", self.CHUNK)
        self._seq = 0
        self.number = number
        self._call(lib.bind_queue, number)
        self._call(lib.set_mode, number, COPY_BYTES, lib.NFQNL_COPY_PACKET)
        self._call(lib.set_maxlen, number, QUEUE_MAXLEN)

    def _alloc(self, n: int) -> None:
        for _ in range(n):
            p = self.ffi.new("struct nfq_packet *")
            b = self.ffi.new("char[]", self.BUF)
            self._keep.append(b)
            p.buffer = b
            p.len = self.BUF
            self.free.append(p)

    def _call(self, fn: Any, *args: Any) -> None:
        """A configuration message, acknowledged; OSError with the kernel's errno if refused."""
        self._seq += 1
        seq = self._seq
        if fn(self.conn, *args, 1, seq) == -1:
            raise OSError(self.ffi.errno, os.strerror(self.ffi.errno))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            for p in self.receive(1.0):
                if p.seq == seq:
                    err = self.lib.parse_packet(p)
                    self.free.append(p)
                    if err == -1:
                        return
                    raise OSError(err, os.strerror(err))
                self.verdict(p, True)   # a packet before the bind completed: let it pass
        raise OSError(110, "no acknowledgement from nfnetlink_queue")

    def receive(self, timeout: float | None) -> list[Any]:
        if len(self.free) < self.CHUNK:
            self._alloc(4 * self.CHUNK)
        r, _, _ = select.select([self.conn.fd, *self.wake], [], [], timeout)
        if self.conn.fd not in r:
            for fd in r:
                with contextlib.suppress(OSError):
                    os.read(fd, 512)
            return []
        arr, free = self._arr, self.free
        batch = free[-self.CHUNK:][::-1]   # the owning cdata objects: arr[i] alone would not keep them alive
        for i, p in enumerate(batch):
            arr[i] = p
        n = self.lib.receive(self.conn, arr, self.CHUNK)
        if n <= 0:
            return []   # EAGAIN, or ENOBUFS: the kernel dropped what did not fit in the socket buffer
        del free[len(free) - n:]
        return batch[:n]

    wake: list[int] = []

    def verdict(self, p: Any, accept: bool) -> None:
        self.lib.set_verdict(self.conn, p, self.lib.NF_ACCEPT if accept else self.lib.NF_DROP, 0, 0, 0)
        self.free.append(p)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.lib.close_connection(self.conn)


def serve(config: Path) -> int:
    data = json.loads(config.read_text())
    number, seed, pairs = parse_config(data)
    sched = Schedule(pairs, seed)
    sched_note = _realtime() if data.get("realtime", True) else "normal"
    try:
        q = Queue(number)
    except (OSError, ImportError) as exc:
        print(f"cannot bind NFQUEUE {number}: {exc} (another process holds it, no CAP_NET_ADMIN, "
              "or fnfqueue missing)", file=sys.stderr, flush=True)
        return 3
    rfd, wfd = os.pipe()
    os.set_blocking(rfd, False)
    os.set_blocking(wfd, False)
    signal.set_wakeup_fd(wfd)
    q.wake = [rfd]
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(1))
    print(f"ready queue={number} pairs={len(pairs)} scheduling={sched_note}", flush=True)
    st = Stats()
    heap: list[tuple[float, int, Any]] = []
    seq = 0
    decide, mono, push, pop = sched.decide, time.monotonic, heapq.heappush, heapq.heappop
    unpack, cast, nfqa = q.ffi.unpack, q.ffi.cast, q.lib.NFQA_PAYLOAD
    parse, verdict, add = q.lib.parse_packet, q.verdict, st.add
    nfqa_mark, null = q.lib.NFQA_MARK, q.ffi.NULL
    marks = {int(k): socket.inet_aton(v) for k, v in data.get("marks", {}).items()}
    ends = Endpoints(marks, socket.inet_aton(data.get("anon_src", "127.0.0.1"))) if marks else None
    try:
        while not stopping:
            timeout = None if not heap else max(0.0, heap[0][0] - mono() - SLACK_S)
            for p in q.receive(timeout):
                if parse(p) != 0:
                    q.free.append(p)
                    continue
                a = p.attr[nfqa]
                hdr = unpack(cast("char *", a.buffer), a.len)
                if ends is None:
                    key = (hdr[12:16], hdr[16:20])
                else:
                    m = p.attr[nfqa_mark]
                    mark = int.from_bytes(unpack(cast("char *", m.buffer), 4), "big") if m.buffer != null else 0
                    key = ends.key(hdr, mark)
                t = decide(key, (hdr[2] << 8) | hdr[3], mono())
                if t is None:
                    verdict(p, False)
                else:
                    seq += 1
                    push(heap, (t, seq, p))
            now = mono()
            while heap and heap[0][0] <= now + SLACK_S:
                t, _, p = pop(heap)
                add(now - t)
                verdict(p, True)
    finally:
        for _, _, p in heap:   # teardown must not drop what the run sent: everything held goes now
            verdict(p, True)
        q.close()
        stats_path = data.get("stats")
        if stats_path:
            Path(stats_path).write_text(json.dumps(stats_dict(sched, st)))
    return 0


def links_json(queue: int, seed: int, stats: Path, links: Iterable[Mapping[str, Any]],
               marks: Mapping[int, str] | None = None) -> str:
    return json.dumps({"queue": queue, "seed": seed, "stats": str(stats), "links": list(links),
                       "marks": {str(k): v for k, v in (marks or {}).items()}}, indent=1)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(serve(Path(sys.argv[1])))
