"""The patch's events from a real patched relay under traffic, collected and exported.

A private network of local tor processes (harness.network, "default" scenario) with the
patched build (harness.build, cached) on its `kist` middle relay; web and bulk clients
load it while the collector records the relay's KIST_RUN and KIST_OVERHEAD events.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import pytest

from harness.control.auth import Credentials
from harness.control.collector import CollectConfig, Collector
from harness.control.transport import TcpTransport
from harness.store.db import open_store
from harness.store.export import export_runs
from harness.store.records import Kind

pytestmark = pytest.mark.integration


def test_patched_relay_runs_are_collected_typed_and_exported(tmp_path: Path) -> None:
    from harness.build import default_patches_dir, ensure_built
    from harness.config import load_scenario
    from harness.network import up
    from harness.traffic.profiles import run_profiles
    from kist_reference import trace

    build = ensure_built(patches_dir=default_patches_dir())  # cached after the first build
    net = load_scenario("default")
    net = dataclasses.replace(net, traffic=dataclasses.replace(net.traffic, duration_s=20.0))
    store_path = tmp_path / "s.db"
    with up(net, "local", patched=build.tor) as handle, open_store(store_path) as store:
        node = handle.node("kist")
        config = CollectConfig(run_id="patched", duration_s=None, snapshot_every_s=5.0,
                               patch_hash=build.series_hash, parse_workers=1)
        collector = Collector(TcpTransport(node.control_host, node.control_port),
                              Credentials(node.cookie_path), store, config)
        th = threading.Thread(target=collector.run)
        th.start()
        try:
            run_profiles(handle, net, tmp_path / "downloads.jsonl", seed=1)
        finally:
            collector.stop()
            th.join(60)
        progress = collector.progress
        assert progress.errors == 0 and progress.shed == 0 and progress.gaps == 0
        assert not progress.unavailable.keys() & {"KIST_RUN", "KIST_OVERHEAD"}
        runs = list(store.records("KIST_RUN"))
        overhead = [r.data for _c, r in store.records("KIST_OVERHEAD")]
        assert len(runs) >= 50 and len(overhead) >= 50
        ctx, first = runs[0]
        assert ctx.patch_hash == build.series_hash and ctx.fingerprint == node.fingerprint
        assert first.data["sched"] == "KIST"
        # KIST_OVERHEAD shares RUN with its KIST_RUN: the same runs, in the same order
        # (from the first run both subscriptions were in force: SETEVENTS goes one by one)
        run_numbers = [r.data["run"] for _c, r in runs]
        assert run_numbers == sorted(run_numbers)
        both = min(o["run"] for o in overhead)
        assert {r for r in run_numbers if r >= both} <= {o["run"] for o in overhead}
        assert store.count(Kind.ERROR) == 0
        n = export_runs(store, tmp_path / "runs.jsonl", run_id="patched")
    assert n == len(runs)
    assert sum(1 for _ in trace.read_records(tmp_path / "runs.jsonl")) == n
    print(f"{n} KIST runs, {len(overhead)} overhead events collected from the patched relay")
