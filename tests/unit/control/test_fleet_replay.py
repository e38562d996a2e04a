"""The fleet collector over real control-port sockets (replay ports), in real shard processes.

Three relays stream for longer than the collection; one falls silent after a few lines (the watchdog drops it, the
collector reconnects: a closed gap); one port is closed (unreachable the whole time: an open
gap in its own session). The others are unaffected: every event they sent is stored.
"""

from __future__ import annotations

import contextlib
import socket
from collections import Counter
from pathlib import Path

from harness.control.bench import _lines
from harness.control.fleet import FleetCollector, FleetSettings, relay_run_id
from harness.control.fleetfile import RelaySpec
from harness.control.replayport import ReplaySpec, replay_port
from harness.store.db import open_store
from harness.store.records import KIST_RUN, Kind


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_fleet_stores_every_relay_apart_and_survives_silent_and_unreachable_relays(tmp_path: Path) -> None:
    lines = _lines("small", 100)
    with contextlib.ExitStack() as stack:
        busy = [stack.enter_context(replay_port(ReplaySpec(lines, repeat=80, rate=400))) for _ in range(3)]
        silent = stack.enter_context(replay_port(ReplaySpec(lines[:10])))  # 10 lines, then nothing
        specs = [RelaySpec(f"busy{i}", control=f"127.0.0.1:{p.port}") for i, p in enumerate(busy)]
        specs += [RelaySpec("silent", control=f"127.0.0.1:{silent.port}"),
                  RelaySpec("gone", control=f"127.0.0.1:{_closed_port()}")]
        settings = FleetSettings(run_id="t", duration_s=9.0, snapshot_every_s=3600, stall_s=2.0,
                                 backoff_first_s=0.2, backoff_max_s=1.0)
        states = FleetCollector(specs, settings, tmp_path / "f.db", processes=2).run()
        sent = {f"busy{i}": p.sent for i, p in enumerate(busy)}
    assert {n: s.state for n, s in states.items()} == {
        "busy0": "done", "busy1": "done", "busy2": "done", "silent": "done", "gone": "unreachable"}
    with open_store(tmp_path / "f.db", readonly=True) as store:
        runs = Counter(ctx.run_id for ctx, _r in store.records(KIST_RUN))
        gaps = {ctx.run_id: r.data for ctx, r in store.records(Kind.GAP)}
        sessions = {ctx.run_id for ctx, _r in store.records(Kind.SESSION)}
    for name, n in sent.items():
        # streaming until the end: every event received is in its relay's session, and all
        # but what was still in flight when the collection ended were received
        assert runs[relay_run_id("t", name)] == states[name].events > 0.8 * n, (name, n, runs)
        assert states[name].gaps == 0 and states[name].shed == 0
    assert sessions == {relay_run_id("t", s.name) for s in specs}
    assert runs[relay_run_id("t", "silent")] >= 10 and states["silent"].gaps >= 1
    assert not gaps[relay_run_id("t", "silent")].get("open")       # it came back: a closed gap
    gone = gaps[relay_run_id("t", "gone")]
    assert gone["open"] and "127.0.0.1" in gone["last_error"] and gone["seconds"] > 4
