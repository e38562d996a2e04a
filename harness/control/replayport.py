"""A minimal tor control port that replays recorded event lines.

For the benchmark and for exercising the collector's whole path (socket → stem → buffer
→ writer → store) with the patch's events before a patched tor is at hand. It speaks just
enough of the control protocol for stem and the collector: PROTOCOLINFO, AUTHENTICATE
(NULL), GETINFO, GETCONF, SETCONF, SETEVENTS, QUIT. Real tor is used wherever it can be.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from harness.store.records import KIST_OVERHEAD, KIST_RUN

log = logging.getLogger(__name__)

STANDARD_NAMES = ("CIRC", "STREAM", "ORCONN", "BW", "CONF_CHANGED", "CIRC_BW", "CONN_BW",
                  "CELL_STATS", "NOTICE", "WARN")


@dataclass
class ReplaySpec:
    """What the fake tor says and streams once a controller subscribes to ``stream_event``."""

    lines: Sequence[str]                   # wire lines ("650 KIST_RUN ...") sent in order
    repeat: int = 1                        # send the list this many times (no copies made)
    rate: float | None = None              # events per second; None = as fast as possible
    stream_event: str = KIST_RUN
    extra_events: tuple[str, ...] = (KIST_RUN, KIST_OVERHEAD)  # a patched tor's
    info: dict[str, str] = field(default_factory=lambda: {
        "version": "0.4.9.11 (git-0000000000000000)", "fingerprint": "A" * 40,
        "traffic/read": "0", "traffic/written": "0", "uptime": "1", "consensus/params": ""})
    conf: dict[str, str] = field(default_factory=lambda: {
        "Schedulers": "KIST,KISTLite,Vanilla", "KISTSchedRunInterval": "0",
        "KISTSockBufSizeFactor": "1.000000", "TestingEnableConnBwEvent": "0",
        "TestingEnableCellStatsEvent": "0", "__OwningControllerProcess": ""})


class ReplayPort:
    """Listens on 127.0.0.1 (port 0 = any); one controller at a time."""

    def __init__(self, spec: ReplaySpec, port: int = 0) -> None:
        self.spec = spec
        self.server = socket.create_server(("127.0.0.1", port))
        self.port = self.server.getsockname()[1]
        self.sent = 0
        self.done = threading.Event()       # every line sent
        self.first_sent_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="replay-port", daemon=True)

    def start(self) -> ReplayPort:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self.server.close()
        self._thread.join(5)

    def _serve(self) -> None:
        self.server.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.server.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                try:
                    self._session(conn)
                except OSError:  # the controller went away (or was killed)
                    continue

    def _session(self, conn: socket.socket) -> None:
        lock = threading.Lock()
        names = set(STANDARD_NAMES) | set(self.spec.extra_events)
        streamer: threading.Thread | None = None

        def send(text: str) -> None:
            with lock:
                conn.sendall(text.encode())

        reader = conn.makefile("rb")
        for raw in reader:
            line = raw.decode(errors="replace").strip()
            verb, _, rest = line.partition(" ")
            verb = verb.upper()
            if verb == "PROTOCOLINFO":
                send('250-PROTOCOLINFO 1\r\n250-AUTH METHODS=NULL\r\n'
                     f'250-VERSION Tor="{self.spec.info["version"].split()[0]}"\r\n250 OK\r\n')
            elif verb == "GETINFO":
                send(self._getinfo(rest.split(), names))
            elif verb == "GETCONF":
                keys = rest.split()
                out = [f"{k}={self.spec.conf.get(k, '')}" for k in keys]
                send("".join(f"250-{o}\r\n" for o in out[:-1]) + f"250 {out[-1]}\r\n")
            elif verb == "SETEVENTS":
                unknown = [n for n in rest.split() if n not in names]
                if unknown:
                    send(f'552 Unrecognized event "{unknown[0]}"\r\n')
                    continue
                send("250 OK\r\n")
                if self.spec.stream_event in rest.split() and streamer is None:
                    streamer = threading.Thread(target=self._stream, args=(send,), daemon=True)
                    streamer.start()
            elif verb == "QUIT":
                send("250 closing connection\r\n")
                break
            else:  # AUTHENTICATE, SETCONF, RESETCONF, USEFEATURE, TAKEOWNERSHIP ...
                send("250 OK\r\n")

    def _getinfo(self, keys: list[str], names: set[str]) -> str:
        info = {**self.spec.info, "events/names": " ".join(sorted(names))}
        out = []
        for key in keys:
            if key not in info:
                return f'552 Unrecognized key "{key}"\r\n'
            value = info[key]
            out.append(f"250+{key}=\r\n{value}\r\n.\r\n" if "\n" in value else f"250-{key}={value}\r\n")
        return "".join(out) + "250 OK\r\n"

    def _stream(self, send: object) -> None:
        assert callable(send)
        spec = self.spec
        chunk = 64 if spec.rate is None else max(1, int(spec.rate / 100))
        lines = spec.lines
        self.first_sent_at = time.monotonic()
        start = self.first_sent_at
        try:
            for _ in range(spec.repeat):
                for i in range(0, len(lines), chunk):
                    if self._stop.is_set():
                        return
                    part = lines[i:i + chunk]
                    send("".join(ln.rstrip("\r\n") + "\r\n" for ln in part))
                    self.sent += len(part)
                    if spec.rate is not None:
                        ahead = self.sent / spec.rate - (time.monotonic() - start)
                        if ahead > 0:
                            time.sleep(ahead)
        except OSError:
            return
        finally:
            self.done.set()


@contextlib.contextmanager
def replay_port(spec: ReplaySpec, port: int = 0) -> Iterator[ReplayPort]:
    rp = ReplayPort(spec, port).start()
    try:
        yield rp
    finally:
        rp.close()
