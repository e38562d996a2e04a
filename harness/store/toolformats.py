"""A store in the formats other Tor measurement tools read: OnionPerf analysis JSON and
oniontrace logs, one set per arm, so OnionPerf's and tornettools' tooling can plot a run.

* ``<arm>/onionperf.analysis.json``: OnionPerf's analysis format 4.0 (``schema/onionperf-4.0.json``
  in torproject/onionperf). Each client is a host (``data.<host>``); each download a tgen
  stream under ``tgen.streams`` with its byte, time and transport info (times in µs as tgen
  writes them: ``usecs-to-first-byte-recv`` is TTFB, ``usecs-to-last-byte-recv`` TTLB).
  Our clients are HTTP-over-SOCKS fetchers, not tgen, so the fields tgen has and they do not
  (checksums, proxy handshake steps, file descriptors) are ``"-1"``, as tgen writes an unset
  one. ``tor.circuits`` and ``tor.streams`` are empty: the harness records circuits on the relays
  under test, not on the clients (they go into the oniontrace logs). Each host also carries
  tgentools' ``stream_summary`` (TTFB/TTLB per size per second, errors), which is what
  tornettools' ``parse`` reads from a ``tgen.analysis.json``; ``tgen.analysis.json`` is a
  symlink to the same file.
* ``<arm>/<relay>.oniontrace.1000.stdout``: the BW and CIRC events of each relay as oniontrace
  logs them (``DATE TIME UNIX.USEC [message] [func] Logger: 650 BW READ WRITTEN``), after the
  two lines oniontracetools' parser waits for (OnionTrace's start line and ``Bootstrapped 100``).

tornettools keeps only hosts named ``perfclient<N>exit`` (clients) and names holding ``relay``;
``tornettools_names=True`` names the hosts that way (the harness's name stays in each host's
``kist_harness_name``).
"""

from __future__ import annotations

import datetime
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.store.db import Store
from harness.store.records import BW, UNATTRIBUTED, Context, Kind

ONIONPERF_VERSION = "4.0"
ONIONTRACE_VERSION = "1.0.0"   # oniontracetools refuses a log whose start line names another version
CIRC = "CIRC"
_HOST = re.compile(r"[^A-Za-z0-9-]+")
UNSET = "-1"


@dataclass(frozen=True)
class Exported:
    arms: tuple[str, ...]
    streams: int
    oniontrace_logs: int
    files: tuple[Path, ...]


def host_name(name: str) -> str:
    """A host key OnionPerf's schema accepts (``^[A-Za-z0-9-]+$``)."""
    return _HOST.sub("-", name).strip("-") or "host"


def _us(seconds: float | None) -> str:
    return UNSET if seconds is None or seconds != seconds else str(int(round(seconds * 1e6)))


def stream(n: int, client: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """One download record (harness.traffic.clients.Download's fields) as a tgen stream."""
    size = int(data["size"])
    received = int(data.get("received") or 0)
    ok = data.get("outcome") == "ok" and data.get("ttlb_s") is not None
    ttfb, ttlb = data.get("ttfb_s"), data.get("ttlb_s")
    start = float(data.get("start") or 0.0)
    end = start + float(ttlb if ttlb is not None else (ttfb if ttfb is not None else 0.0))
    # a download cut off at the phase's end is what tgen calls a TIMEOUT (its stream's time ran out)
    error = "NONE" if ok else {"cutoff": "TIMEOUT"}.get(str(data.get("outcome")),
                                                        str(data.get("outcome") or "ERROR").upper())
    progress = f"{100.0 * received / size if size else 100.0:.1f}%"
    elapsed: dict[str, dict[str, float]] = {"payload_bytes_recv": {}, "payload_progress_recv": {}}
    if ttfb is not None:
        elapsed["payload_progress_recv"]["0.0"] = float(ttfb)
    if ok and ttlb is not None:
        elapsed["payload_bytes_recv"][str(size)] = float(ttlb)
        elapsed["payload_progress_recv"]["1.0"] = float(ttlb)
    return {
        "stream_id": f"{n}:{client}:localhost:127.0.0.1:{n}:server",
        "is_complete": True, "is_success": ok, "is_error": not ok,
        "unix_ts_start": start, "unix_ts_end": end,
        "byte_info": {"payload-bytes-recv": str(received), "payload-bytes-send": "0",
                      "payload-progress-recv": progress, "payload-progress-send": "100.0%",
                      "total-bytes-recv": str(received), "total-bytes-send": "0"},
        "stream_info": {"error": error, "id": str(n), "name": client, "peername": "server",
                        "recvsize": str(size), "recvstate": "SUCCESS" if ok else "ERROR",
                        "sendsize": "0", "sendstate": "SUCCESS", "vertexid": str(data.get("profile") or "stream")},
        "time_info": {"created-ts": _us(start), "now-ts": _us(end),
                      "usecs-to-first-byte-recv": _us(ttfb), "usecs-to-last-byte-recv": _us(ttlb if ok else None),
                      **{k: UNSET for k in ("usecs-to-checksum-recv", "usecs-to-checksum-send", "usecs-to-command",
                                            "usecs-to-first-byte-send", "usecs-to-last-byte-send",
                                            "usecs-to-proxy-choice", "usecs-to-proxy-init", "usecs-to-proxy-request",
                                            "usecs-to-proxy-response", "usecs-to-response",
                                            "usecs-to-socket-connect", "usecs-to-socket-create")}},
        "transport_info": {"error": error, "fd": UNSET, "local": "localhost:127.0.0.1:0",
                           "proxy": "localhost:127.0.0.1:9050", "remote": "server:127.0.0.1:80",
                           "state": "SUCCESS" if ok else "ERROR"},
        "elapsed_seconds": elapsed,
    }


def _summary(streams: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """tgentools' stream_summary: seconds per size header per second, and errors."""
    out: dict[str, Any] = {"time_to_first_byte_recv": {}, "time_to_last_byte_recv": {}, "errors": {}}
    for s in streams:
        size, sec = s["stream_info"]["recvsize"], str(int(s["unix_ts_end"]))
        t = s["time_info"]
        if s["is_success"]:
            for key, usecs in (("time_to_first_byte_recv", t["usecs-to-first-byte-recv"]),
                               ("time_to_last_byte_recv", t["usecs-to-last-byte-recv"])):
                out[key].setdefault(size, {}).setdefault(sec, []).append(int(usecs) / 1e6)
        else:
            out["errors"].setdefault(s["stream_info"]["error"], {}).setdefault(sec, []).append(int(size))
    return out


def onionperf_analysis(downloads: Iterable[tuple[str, Mapping[str, Any]]], *,
                       tornettools_names: bool = False) -> dict[str, Any]:
    """OnionPerf 4.0 analysis of (client, download fields) pairs, one host per client."""
    by_host: dict[str, dict[str, Any]] = {}
    names: dict[str, str] = {}
    for n, (client, data) in enumerate(downloads, 1):
        if client not in names:
            names[client] = f"perfclient{len(names) + 1}exit" if tornettools_names else host_name(client)
        host = by_host.setdefault(names[client], {"measurement_ip": "127.0.0.1", "kist_harness_name": client,
                                                  "tgen": {"streams": {}},
                                                  "tor": {"circuits": {}, "streams": {}}})
        s = stream(n, client, data)
        host["tgen"]["streams"][s["stream_id"]] = s
    for host in by_host.values():
        host["tgen"]["stream_summary"] = _summary(host["tgen"]["streams"].values())
    return {"type": "onionperf", "version": ONIONPERF_VERSION, "data": by_host}


def _stamp(ts: float) -> str:
    dt = datetime.datetime.fromtimestamp(ts, datetime.UTC)
    return f"{dt:%Y-%m-%d %H:%M:%S} {int(ts)}.{int(round((ts % 1) * 1e6)) % 1000000:06d}"


def _created(text: Any) -> str | None:
    try:
        return f"{datetime.datetime.fromisoformat(str(text)):%Y-%m-%dT%H:%M:%S.%f}"
    except ValueError:
        return None


def circ_line(d: Mapping[str, Any]) -> str:
    """A stored CIRC record back on the wire (``650 CIRC ID STATUS PATH KEY=VALUE...``)."""
    parts = ["650", "CIRC", str(d.get("id", "0")), str(d.get("status", "UNKNOWN"))]
    path = d.get("path") or ()
    if path:  # stem's (fingerprint, nickname) pairs; a hop without a nickname is its fingerprint
        parts.append(",".join(f"${fp}~{nick}" if nick else f"${fp}" for fp, nick in path))
    flags = d.get("build_flags")
    if flags:
        parts.append("BUILD_FLAGS=" + ",".join(str(f) for f in flags))
    for key, name in (("purpose", "PURPOSE"), ("hs_state", "HS_STATE"), ("reason", "REASON"),
                      ("remote_reason", "REMOTE_REASON")):
        if d.get(key):
            parts.append(f"{name}={d[key]}")
    created = _created(d.get("created")) if d.get("created") else None
    if created:
        parts.append(f"TIME_CREATED={created}")
    return " ".join(parts)


def oniontrace_log(name: str, events: Iterable[tuple[float, str, Mapping[str, Any]]]) -> Iterable[str]:
    """oniontrace's log of one relay: its start line, Bootstrapped 100, then each event."""
    first = True
    for ts, kind, d in events:
        if first:
            yield (f"{_stamp(ts)} [message] [oniontrace_main] Starting OnionTrace v{ONIONTRACE_VERSION} "
                   f"on host {name} process id 0\n")
            yield f"{_stamp(ts)} [message] [_oniontracetorctl_processLine] {name}: torctl client is now ready (Bootstrapped 100)\n"
            first = False
        line = f"650 BW {int(d.get('read', 0))} {int(d.get('written', 0))}" if kind == BW else circ_line(d)
        yield f"{_stamp(ts)} [message] [_oniontracelogger_logControlLine] Logger: {line}\n"


def export_tools(store: Store, out: Path, *, tornettools_names: bool = False) -> Exported:
    """Write every arm's OnionPerf analysis and oniontrace logs under out/<arm>/."""
    per_arm: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
    for ctx, rec in store.records(Kind.DOWNLOAD):
        if ctx.arm not in UNATTRIBUTED:
            per_arm.setdefault(ctx.arm, []).append((str(rec.data.get("client", ctx.fingerprint)), rec.data))
    relays: dict[tuple[str, str], list[tuple[float, str, Mapping[str, Any]]]] = {}
    for kind in (BW, CIRC):
        for ctx, rec in store.records(kind):
            relays.setdefault((_arm_dir(ctx), ctx.fingerprint), []).append((rec.ts, kind, rec.data))
    files: list[Path] = []
    streams = 0
    for arm, downloads in sorted(per_arm.items()):
        d = out / host_name(arm)
        d.mkdir(parents=True, exist_ok=True)
        doc = onionperf_analysis(downloads, tornettools_names=tornettools_names)
        streams += sum(len(h["tgen"]["streams"]) for h in doc["data"].values())
        path = d / "onionperf.analysis.json"
        _atomic(path, json.dumps(doc, indent=1, sort_keys=True) + "\n")
        link = d / "tgen.analysis.json"
        link.unlink(missing_ok=True)
        link.symlink_to(path.name)
        files.append(path)
    for (arm, fp), events in sorted(relays.items()):
        events.sort(key=lambda e: e[0])
        name = ("relay" if tornettools_names else "") + host_name(fp)
        d = out / arm
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"{name}.oniontrace.1000.stdout"
        _atomic(path, "".join(oniontrace_log(name, events)))
        files.append(path)
    arms = tuple(sorted(set(per_arm) | {a for a, _ in relays}))
    return Exported(arms, streams, len(relays), tuple(files))


def export_dir(store_path: Path, out: Path, made_by: str, *, tornettools_names: bool = False) -> str:
    """Export the store at store_path into ``out``, a directory the harness owns (harness.outdir:
    an earlier export there is replaced, anything else refused); one line saying what."""
    from harness import outdir

    owned = outdir.claim(out, made_by)
    with Store(store_path, readonly=True) as store:
        res = export_tools(store, out, tornettools_names=tornettools_names)
    owned.record()
    return (f"tools: {res.streams} downloads as OnionPerf 4.0 analysis JSON, {res.oniontrace_logs} relay logs "
            f"(oniontrace format), arms {', '.join(res.arms) or 'none'}: {out}")


def add_to_report(store_path: Path, report_dir: Path) -> str:
    """The export as ``tools/`` of a report directory just rendered (listed in its marker, so
    the next report replaces it)."""
    from harness.outdir import OwnedDir

    line = export_dir(store_path, report_dir / "tools", "kist-harness report")
    OwnedDir(report_dir, "kist-harness report").record()
    return line


def _arm_dir(ctx: Context) -> str:
    return host_name(ctx.arm if ctx.arm not in UNATTRIBUTED else "unattributed")


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

