"""harness.network.join: the torrc a deployed relay uses to join a running private network."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import parse_scenario
from harness.errors import StepError
from harness.network import join, torrc
from harness.network.keys import Keys
from harness.network.layout import Layout, Ports
from harness.network.running import NodeInfo, RunningNetwork

NET = parse_scenario({"network": {"name": "tiny"}, "authorities": {"count": 3, "vote_guard": True},
                      "relays": [{"name": "exit", "count": 2, "role": "exit", "vote_guard": True}]})


def _running(tmp_path: Path) -> tuple[RunningNetwork, list[str]]:
    layout = Layout(tmp_path, Ports(21000), tuple((n.name, f"10.9.0.{i + 2}") for i, n in enumerate(NET.nodes)))
    keys = {n.name: Keys(f"{i:040X}", f"{i + 100:040X}" if n.name.startswith("auth") else None)
            for i, n in enumerate(NET.nodes)}
    for node in NET.nodes:   # what prepare() writes
        layout.torrc(node.name).parent.mkdir(parents=True)
        layout.torrc(node.name).write_text(torrc.render(NET, node, layout, keys))
    nodes = tuple(NodeInfo(n.name, n.role, layout.ip(n.name), 21003, layout.data_dir(n.name) / "c",
                           layout.data_dir(n.name), layout.log_file(n.name), keys[n.name].fingerprint,
                           n.scheduler, n.binary) for n in NET.nodes)
    running = RunningNetwork(NET.name, "tiny-1", "docker", tmp_path, NET.source, nodes, ())
    return running, torrc.dir_authority_lines(NET, layout, keys)


def test_relay_torrc_trusts_exactly_the_networks_authorities(tmp_path: Path) -> None:
    running, expected = _running(tmp_path)
    assert join.authority_lines(running) == expected and len(expected) == 3
    lines = join.relay_torrc(running, "10.9.0.50", 24001).splitlines()
    assert [x for x in lines if x.startswith("DirAuthority ")] == expected
    for want in ("TestingTorNetwork 1", "DisableNetwork 0", "Address 10.9.0.50",
                 "ORPort 10.9.0.50:24001", "ExitRelay 0"):
        assert want in lines
    assert not [x for x in lines if x.lower().startswith(("control", "cookie", "schedulers"))]


def test_a_network_whose_files_are_gone_says_so(tmp_path: Path) -> None:
    running, _ = _running(tmp_path / "run")
    (tmp_path / "run" / "nodes" / "auth0" / "torrc").unlink()
    with pytest.raises(StepError, match="cannot read .*auth0/torrc"):
        join.relay_torrc(running, "10.9.0.50", 24001)
