"""[links] on the Swarm backend, measured: one delay line in each task's network namespace
(harness.network.linkapply.start_per_node), every connection's tcp_info min_rtt within 10 %
(or 1 ms) of the configured round trip, the congestion control set in each namespace, and
no delay line left after teardown. About a minute on a single-node swarm of this engine.
"""

from __future__ import annotations

import os
import tomllib
from typing import Any

import pytest

from harness.config import parse_scenario
from harness.network import hostcaps, lifecycle, linkapply

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: nsenter, iptables and NFQUEUE in task namespaces"),
]

SCENARIO = """
[network]
name = "swl"
bootstrap_timeout_s = 120
[authorities]
name = "swla"
count = 3
vote_guard = true
[[relays]]
name = "swlx"
role = "exit"
count = 2
[[clients]]
name = "swlc"
profile = "web"
[[fileservers]]
name = "swls"
[traffic]
duration_s = 5
[links]
latency_ms = 6
congestion = "{cc}"
[links.classes.client]
latency_ms = 20
"""


def test_swarm_network_sees_the_emulated_path_and_leaves_nothing(engine: Any, established: Any,
                                                                  delay_lines: Any) -> None:
    caps = hostcaps.probe()
    if not caps.delayline:
        pytest.fail(f"this host cannot run the delay line: {caps.line()} ({caps.detail})")
    cc = next((c for c in caps.allowed_cc if c != caps.default_cc), caps.default_cc)
    net = parse_scenario(tomllib.loads(SCENARIO.format(cc=cc)), "swarm-links-test.toml")
    with lifecycle.up(net, "swarm") as running:
        plan = linkapply.read_in_force(running.run_dir)
        assert plan is not None and plan["mechanism"] == "delayline", plan
        members = len(running.nodes) + len(running.servers)
        assert len(delay_lines(str(running.run_dir))) == members   # one per task namespace
        latency = {(p["src"], p["dst"]): p["latency_ms"] for p in plan["paths"]}
        name_of = _overlay_names(engine, running)
        rows = established({n.name: engine.containers.get(n.container) for n in running.nodes}, name_of)
        assert len(rows) >= 4, rows
        report = []
        for a, b, got_cc, got in rows:
            want = latency[(a, b)] + latency[(b, a)]
            report.append(f"{a}->{b}: configured {want:g} ms, tcp_info min_rtt {got:.2f} ms, {got_cc}")
            assert got_cc == cc, report[-1]
            assert abs(got - want) <= max(0.1 * want, 1.0), report[-1]
        print("\n".join(report))
        run_dir = running.run_dir
    assert delay_lines(str(run_dir)) == []


def _overlay_names(engine: Any, running: Any) -> dict[str, str]:
    """Overlay address -> node name, read from each task container's attachment to the run's network."""
    out = {}
    for member in [*running.nodes, *running.servers]:
        cont = engine.containers.get(member.container)
        nets = cont.attrs["NetworkSettings"]["Networks"]
        out[nets[running.docker_network]["IPAddress"]] = member.name
    return out
