"""The scenario's `placement` field and how the Swarm backend matches it to nodes (no engine)."""

from __future__ import annotations

import tomllib

import pytest

from harness.config import parse_scenario, scenario_path
from harness.errors import InputError
from harness.network.swarmmode import SwarmNode, check_placement, matches


def _basic(extra: str, group: str = '[[clients]]\nname = "client"') -> str:
    return scenario_path("basic").read_text().replace(group, f"{group}\n{extra}")


def _node(hostname: str, role: str = "worker", ready: bool = True, **labels: str) -> SwarmNode:
    return SwarmNode(f"id-{hostname}", hostname, role, ready, labels, {"storage": "ssd"}, "linux", "x86_64", "")


def test_placement_is_parsed_for_every_node_of_the_group() -> None:
    net = parse_scenario(tomllib.loads(_basic('placement = ["node.labels.zone == b", "node.role!=manager"]')), "s.toml")
    assert {n.name: n.placement for n in net.clients} == {
        "client0": ("node.labels.zone == b", "node.role!=manager"),
        "client1": ("node.labels.zone == b", "node.role!=manager")}
    assert all(n.placement == () for n in net.relays)


def test_fileservers_take_placement_too() -> None:
    net = parse_scenario(tomllib.loads(_basic('placement = ["node.hostname==h1"]', '[[fileservers]]\nname = "server"')),
                         "s.toml")
    assert net.fileservers[0].placement == ("node.hostname==h1",)


@pytest.mark.parametrize("bad", ['placement = ["zone==b"]', 'placement = ["node.labels.zone=b"]',
                                 'placement = [3]', 'placement = "node.role==manager"'])
def test_malformed_placement_is_one_paragraph_naming_the_table(bad: str) -> None:
    with pytest.raises(InputError) as err:
        parse_scenario(tomllib.loads(_basic(bad)), "s.toml")
    msg = str(err.value)
    assert msg.startswith("scenario s.toml, [clients[0]]:") and "placement" in msg and "\n" not in msg


def test_constraints_match_as_swarm_does() -> None:
    w = _node("w1", zone="a")
    assert matches(w, ["node.labels.zone==a", "node.role==worker", "engine.labels.storage==ssd"])
    assert not matches(w, ["node.labels.zone==b"])
    assert matches(w, ["node.labels.missing!=x"])  # a label the node lacks differs from any value
    assert not matches(w, ["node.role!=worker"])


def test_placement_no_ready_node_satisfies_names_the_nodes_and_the_fix() -> None:
    nodes = [_node("m1", "manager"), _node("w1", zone="a"), _node("w2", ready=False, zone="b")]
    check_placement("s.toml", {"exit0": ["node.labels.zone==a"], "auth0": []}, nodes)
    with pytest.raises(InputError) as err:
        check_placement("s.toml", {"exit0": ["node.labels.zone==b"], "exit1": ["node.labels.zone==b"]}, nodes)
    msg = str(err.value)
    assert "exit0, exit1" in msg and "node.labels.zone==b" in msg and "w1 (worker, zone=a)" in msg
    assert "w2" not in msg  # not ready: not offered
    assert "docker node update --label-add" in msg
