"""The whole collection path with the patch's events, before a patched tor exists.

A replay control port streams KIST_RUN lines recorded by kist_reference's SimRelay (plus
malformed ones) over a real socket into the real collector; the store's export must then
replay through `kist-harness model replay` with no divergence.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from harness.cli import main as cli_main
from harness.control.auth import Credentials
from harness.control.collector import CollectConfig, Collector
from harness.control.replayport import ReplaySpec, replay_port
from harness.control.transport import TcpTransport
from harness.store.db import open_store
from harness.store.export import export_runs
from harness.store.records import Kind


@pytest.mark.parametrize("workers", [0, 1])
def test_kist_runs_socket_to_store_to_replay(tmp_path: Path, workers: int) -> None:
    from kist_reference import trace
    from kist_reference.recorder import SimRelay

    runs = list(SimRelay(seed=5, n_channels=6).records(60))
    lines = []
    for r in runs:  # each run's KIST_RUN, then its KIST_OVERHEAD, as the patch emits them
        lines.append(f"650 {trace.to_wire(r)}")
        lines.append(f"650 KIST_OVERHEAD RUN={r.run} SCHED={r.sched} T0={r.t0_ns} PENDING={r.n_pending} "
                     f"SOCKETS={len(r.sock)} SOCKNS={r.ti_ns - r.t0_ns} RUNNS={r.t1_ns - r.t0_ns} "
                     f"CELLS=0 WRITES=0 BYTES=0 DIFF={r.diff_ms} NEXT={r.next_us}")
    bad = ["650 KIST_RUN V=1 RUN=x", "650 KIST_RUN " + trace.to_wire(runs[0])[len("KIST_RUN "):][:-40]]
    lines[10:10] = bad
    store_path = tmp_path / "s.db"
    with replay_port(ReplaySpec(lines)) as rp, open_store(store_path) as store:
        config = CollectConfig(run_id="p", duration_s=None, snapshot_every_s=0.5,
                               flush_every_s=0.05, parse_workers=workers)
        c = Collector(TcpTransport("127.0.0.1", rp.port), Credentials(), store, config)
        th = threading.Thread(target=c.run)
        th.start()
        deadline = time.monotonic() + 60
        while c.writer.events < len(lines) and time.monotonic() < deadline:
            time.sleep(0.02)
        c.stop()
        th.join(30)
        assert c.progress.errors == 2 and c.progress.shed == 0
        assert store.count("KIST_RUN") == len(runs) and store.count(Kind.ERROR) == 2
        overhead = [r.data for _c, r in store.records("KIST_OVERHEAD")]
        assert [o["run"] for o in overhead] == [r.run for r in runs]
        assert [o["run_ns"] for o in overhead] == [r.t1_ns - r.t0_ns for r in runs]
        errors = [r for _c, r in store.records(Kind.ERROR)]
        assert errors[0].raw == "KIST_RUN V=1 RUN=x" and "RUN" in errors[0].data["reason"]
        (_c, features), = store.records(Kind.FEATURES)
        assert {"KIST_RUN", "KIST_OVERHEAD"} <= set(features.data["subscribed"])
        ctx, first = next(store.records("KIST_RUN"))
        assert ctx.fingerprint == "A" * 40 and ctx.tor_version == "0.4.9.11"
        assert first.data["n_pending"] == runs[0].n_pending
        assert export_runs(store, tmp_path / "runs.jsonl", run_id="p") == len(runs)
    assert list(trace.read_records(tmp_path / "runs.jsonl")) == runs
    assert cli_main(["model", "replay", str(tmp_path / "runs.jsonl")]) == 0


def test_rejected_custom_event_listener_is_removed(tmp_path: Path) -> None:
    """tor rejects an event name: stem raises but keeps the listener; we drop it."""
    spec = ReplaySpec(["650 BW 1 2"], extra_events=())  # a tor without the patch's events
    spec.info["events/names"] = ""  # no names offered: the collector must try and be refused
    with replay_port(spec) as rp:
        import stem.control

        from harness.control.session import subscribe

        with stem.control.Controller.from_port(port=rp.port) as controller:
            controller.authenticate()
            accepted, rejected = subscribe(controller, ["BW", "KIST_RUN", "CIRC"])
            assert accepted == ["BW", "CIRC"] and list(rejected) == ["KIST_RUN"]
            assert "KIST_RUN" not in controller._event_listeners
            assert {"BW", "CIRC"} <= set(controller._event_listeners)


def test_socket_factory_transport_is_the_ssh_seam(tmp_path: Path) -> None:
    """harness.remote hands a function returning a connected socket-like object (a
    paramiko channel); here the function opens a plain socket to the replay port."""
    import socket

    from harness.control.transport import SocketFactoryTransport

    closed: list[bool] = []
    with replay_port(ReplaySpec(["650 BW 1 2"] * 5, stream_event="BW")) as rp, \
            open_store(tmp_path / "s.db") as store:
        transport = SocketFactoryTransport(
            lambda: socket.create_connection(("127.0.0.1", rp.port)), "test tunnel",
            on_close=lambda: closed.append(True))
        c = Collector(transport, Credentials(), store,
                      CollectConfig(run_id="f", duration_s=1.0, flush_every_s=0.05))
        c.run()
        assert store.count("BW") == 5 and closed == [True]
        (_c, session), = store.records(Kind.SESSION)
        assert session.data["control"] == "test tunnel"
