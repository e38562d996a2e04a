"""`kist-harness collect --fleet` on a private network of real tor relays, one killed mid-way.

A local network (harness.network, local backend) of 13 relays: 3 stock authorities, 8
middles running the patched build (cached by harness.build) and 2 stock exits. The CLI
collects from all of them into one store, 2 shard processes; 15 s in, one patched middle
is killed with SIGKILL. The others go on unaffected (no gap, records all the way to the
end); the killed relay's session ends in an open gap naming why. About 2-4 minutes, most
of it the network's bootstrap.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from harness.store.db import open_store
from harness.store.records import Kind

pytestmark = pytest.mark.integration

SCENARIO = """
[network]
name = "fleet"
bootstrap_timeout_s = 240

[authorities]
count = 3
binary = "stock"
vote_guard = true

[[relays]]
name = "mid"
count = 8
role = "middle"
binary = "patched"
scheduler = "KIST"
kist_sched_run_interval_ms = 2

[[relays]]
name = "exit"
count = 2
role = "exit"
binary = "stock"

[[clients]]
name = "client"
count = 1
profile = "none"

[[fileservers]]
name = "server"
"""


def _features(store_path: Path) -> int:
    if not store_path.exists():
        return 0
    with open_store(store_path, readonly=True) as store:
        return len({ctx.run_id for ctx, _r in store.records(Kind.FEATURES)})


def test_fleet_of_real_relays_survives_one_killed(tmp_path: Path) -> None:
    from harness.build import default_patches_dir, ensure_built
    from harness.config import load_scenario
    from harness.network import up

    build = ensure_built(patches_dir=default_patches_dir())
    (tmp_path / "fleet-scenario.toml").write_text(SCENARIO)
    net = load_scenario(tmp_path / "fleet-scenario.toml")
    store_path = tmp_path / "fleet.db"
    with up(net, "local", patched=build.tor) as handle:
        relays = handle.relays
        assert len(relays) >= 10
        (tmp_path / "fleet.toml").write_text("".join(
            f'[relays.{n.name}]\ncontrol = "{n.control_host}:{n.control_port}"\ncookie = "{n.cookie_path}"\n'
            for n in relays))
        victim = next(n for n in relays if n.binary.value == "patched")
        cmd = [sys.executable, "-m", "harness.cli", "collect", "--fleet", str(tmp_path / "fleet.toml"),
               "--out", str(store_path), "--duration", "40s", "--processes", "2", "--run-id", "fleet",
               "--patch-hash", build.series_hash, "--snapshot-every", "5s"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 30
            while _features(store_path) < len(relays) and time.monotonic() < deadline:
                time.sleep(1)  # every relay's session is connected
            assert _features(store_path) == len(relays)
            time.sleep(10)
            assert victim.pid is not None
            os.kill(victim.pid, signal.SIGKILL)
            killed_at = time.time()
            out, err = proc.communicate(timeout=180)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                proc.wait(60)
    assert proc.returncode == 0, err[-3000:]
    assert f"{len(relays)} relays" in out and f"fleet/{victim.name}: done" in out, out
    with open_store(store_path, readonly=True) as store:
        gaps = [(ctx.run_id, r.data) for ctx, r in store.records(Kind.GAP)]
        ends = {ctx.run_id: r.ts for ctx, r in store.records(Kind.END)}
        last = {}
        counts: Counter[str] = Counter()
        fingerprints = {ctx.run_id: ctx.fingerprint for ctx, _r in store.records(Kind.FEATURES)}
        for ctx, r in store.records("BW"):
            last[ctx.run_id] = max(last.get(ctx.run_id, 0.0), r.ts)
            counts[ctx.run_id] += 1
        kist = Counter(ctx.run_id for ctx, _r in store.records("KIST_OVERHEAD"))
    victim_id = f"fleet/{victim.name}"
    assert [g for rid, g in gaps if rid != victim_id] == []           # nobody else noticed
    (gap,) = [g for rid, g in gaps if rid == victim_id]
    assert gap["open"] and abs(gap["start"] - killed_at) < 5 and gap["last_error"]
    assert set(ends) == {f"fleet/{n.name}" for n in relays}            # one session per relay, each ended
    for n in relays:
        rid = f"fleet/{n.name}"
        assert fingerprints[rid] == n.fingerprint
        if rid != victim_id:  # BW every second to the end of the collection
            assert last[rid] > killed_at + 15 and counts[rid] >= 30, (rid, counts[rid])
    assert last[victim_id] < killed_at + 2
    assert sum(kist[f"fleet/{n.name}"] for n in relays if n.binary.value == "patched") > 0
