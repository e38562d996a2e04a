"""The patched tor as an exit in a private loopback network: its events under real traffic.

Smoke test for the patch series: stem subscribes by name, every KIST_RUN line parses with
`kist_reference.trace.parse_wire` and replays through the model without divergence, and
KIST_OVERHEAD / KIST_QTIME agree with the runs they describe, and KIST_KQTIME samples
the kernel queue of the channels they used. Uses the network code's
local backend (plain processes on 127.0.0.1); about a minute.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from harness import build
from harness.config import Role, load_scenario
from harness.network import lifecycle
from harness.traffic import profiles
from kist_reference import replay, trace

pytestmark = pytest.mark.integration

PATCHES = Path(__file__).resolve().parents[3] / "patches"

SCENARIO = """
[network]
name = "kbev"
bootstrap_timeout_s = 240

[authorities]
name = "kbeva"
count = 3
vote_guard = true

[[relays]]
name = "kbevx"
role = "exit"
count = 2                # a lone exit cannot build exit circuits
binary = "patched"

[[clients]]
name = "kbevc"
profile = "web"

[[fileservers]]
name = "kbevs"

[traffic]
duration_s = 8
pause_scale = 0.01
size_scale = 1
max_downloads = 20
"""


def _fields(line: str) -> dict[str, str]:
    return dict(tok.split("=", 1) for tok in line.split()[2:])


def test_patched_exit_events_parse_and_replay(tmp_path: Path) -> None:
    from stem.control import Controller

    tor = build.ensure_built("debian", PATCHES).tor
    (tmp_path / "kbev.toml").write_text(SCENARIO)
    net = load_scenario(tmp_path / "kbev.toml")
    got: dict[str, list[str]] = {"KIST_RUN": [], "KIST_OVERHEAD": [], "KIST_QTIME": [], "KIST_KQTIME": []}
    lock = threading.Lock()

    def on_event(event: object) -> None:
        raw = "650 " + str(event)
        with lock:
            got[raw.split()[1]].append(raw)

    with lifecycle.up(net, "local", patched=tor) as handle:
        exit_node = handle.by_role(Role.EXIT)[0]
        with Controller.from_port(address=exit_node.control_host, port=exit_node.control_port) as c:
            c.authenticate()
            c.add_event_listener(on_event, *got)  # one SETEVENTS: every run gets all of them
            summary = profiles.run_profiles(handle, net, tmp_path / "traffic.jsonl", seed=3)
            time.sleep(0.5)
    assert summary.downloads >= 1

    runs = [trace.parse_wire(line) for line in got["KIST_RUN"]]
    assert runs, "no KIST_RUN event under traffic"
    assert {r.sched for r in runs} == {"KIST"}
    results = replay.replay(runs)
    diverged = [r.divergence for r in results if r.divergence]
    assert not diverged, diverged[:3]
    decisions = sum(r.decisions for r in results)
    assert decisions > 100

    overhead = {int(_fields(line)["RUN"]): _fields(line) for line in got["KIST_OVERHEAD"]}
    qtime = {int(_fields(line)["RUN"]): _fields(line) for line in got["KIST_QTIME"]}
    flushed = 0
    for r in runs:
        o = overhead[r.run]
        cells = sum(isinstance(s, (trace.CellFlush, trace.DestroyFlush)) for s in r.steps)
        assert int(o["PENDING"]) == r.n_pending and int(o["CELLS"]) == cells
        assert int(o["RUNNS"]) == r.t1_ns - r.t0_ns and int(o["SOCKNS"]) == r.ti_ns - r.t0_ns
        q = qtime[r.run]
        assert int(q["N"]) == sum(isinstance(s, trace.CellFlush) for s in r.steps)
        flushed += int(q["N"])
    assert flushed > 0

    # Kernel queue time: sampled writes on channels the runs used, stamped by the kernel.
    kq = [_fields(line) for line in got["KIST_KQTIME"]]
    assert kq, "no KIST_KQTIME event under traffic"
    chans = {s.chan for r in runs for s in r.snapshots}
    assert {int(f["CHAN"]) for f in kq} & chans
    assert all(int(f["BYTES"]) > 0 and f["SNDNS"] != "-" and int(f["SNDNS"]) >= 0 for f in kq)
