"""Generated torrcs: the options each role needs, with a comment for each group."""

from __future__ import annotations

import tomllib
from pathlib import Path

from harness.config import Network, parse_scenario
from harness.network import torrc
from harness.network.keys import Keys
from harness.network.layout import Layout, Ports

SCENARIO = """
[authorities]
count = 3
[[relays]]
name = "guard"
role = "guard"
[[relays]]
name = "kist"
role = "middle"
scheduler = "KIST"
kist_sched_run_interval_ms = 7
kist_sock_buf_size_factor = 1.5
bandwidth_rate_kib = 512
constrained_sock_kib = 8
[[relays]]
name = "van"
role = "middle"
scheduler = "Vanilla"
[[relays]]
name = "exit"
role = "exit"
vote_guard = true
[[relays]]
name = "exitb"
role = "exit"
[[clients]]
name = "client"
"""


def _setup() -> tuple[Network, Layout, dict[str, Keys]]:
    net = parse_scenario(tomllib.loads(SCENARIO), "t.toml")
    names = [n.name for n in net.nodes]
    layout = Layout(Path("/run/x"), Ports(21000), tuple((n, f"127.0.0.{i + 2}") for i, n in enumerate(names)))
    keys = {n.name: Keys(fingerprint=f"{i:040X}" if n.role.is_relay else None,
                         v3ident=f"{i + 100:040X}" if n.role.value == "authority" else None)
            for i, n in enumerate(net.nodes)}
    return net, layout, keys


def _torrc(name: str) -> list[str]:
    net, layout, keys = _setup()
    node = next(n for n in net.nodes if n.name == name)
    return torrc.render(net, node, layout, keys).splitlines()


def _options(lines: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in lines:
        if line and not line.startswith("#"):
            key, _, val = line.partition(" ")
            out.setdefault(key, []).append(val)
    return out


def test_every_node_trusts_all_three_authorities() -> None:
    for name in ("auth0", "guard", "client"):
        opts = _options(_torrc(name))
        assert len(opts["DirAuthority"]) == 3
        assert opts["DirAuthority"][0] == (f"auth0 orport=21000 no-v2 v3ident={100:040X} "
                                           f"127.0.0.2:21001 {0:040X}")
        assert opts["TestingTorNetwork"] == ["1"]
        assert opts["CookieAuthentication"] == ["1"]


def test_control_port_on_node_address() -> None:
    opts = _options(_torrc("kist"))
    assert opts["ControlPort"] == ["127.0.0.6:21003"]  # 5th node: 127.0.0.2 + 4
    assert opts["CookieAuthFile"] == ["/run/x/nodes/kist/data/control_auth_cookie"]


def test_kist_relay_gets_scheduler_and_knobs() -> None:
    opts = _options(_torrc("kist"))
    assert opts["Schedulers"] == ["KIST"]
    assert opts["KISTSchedRunInterval"] == ["7 msec"]
    assert opts["KISTSockBufSizeFactor"] == ["1.5"]
    assert opts["BandwidthRate"] == ["512 KBytes"]
    assert opts["BandwidthBurst"] == ["512 KBytes"]
    assert opts["ExitPolicy"] == ["reject *:*"]
    assert opts["ConstrainedSockets"] == ["1"] and opts["ConstrainedSockSize"] == ["8 KBytes"]


def test_vanilla_relay_has_no_kist_knobs() -> None:
    opts = _options(_torrc("van"))
    assert opts["Schedulers"] == ["Vanilla"]
    assert "ConstrainedSockets" not in opts  # autotuned buffers unless asked
    assert "KISTSchedRunInterval" not in opts and "KISTSockBufSizeFactor" not in opts


def test_exit_accepts_private_addresses() -> None:
    opts = _options(_torrc("exit"))
    assert opts["ExitPolicy"] == ["accept *:*"]
    assert opts["ExitPolicyRejectPrivate"] == ["0"]


def test_authority_votes_flags_by_role_fingerprints() -> None:
    opts = _options(_torrc("auth1"))
    assert opts["V3AuthoritativeDirectory"] == ["1"]
    assert opts["TestingDirAuthVoteExit"] == [f"${6:040X},${7:040X}"]  # exit, exitb: 7th and 8th nodes
    assert opts["TestingDirAuthVoteGuard"] == [f"${3:040X},${6:040X}"]  # guard + exit (vote_guard)
    assert opts["TestingV3AuthInitialVotingInterval"] == ["5"]
    # tor's own limits (dirauth_config.c): delays sum below the initial interval, 30 min divisible.
    assert torrc.INITIAL_VOTE_DELAY + torrc.INITIAL_DIST_DELAY < torrc.INITIAL_VOTING_INTERVAL
    assert 1800 % torrc.INITIAL_VOTING_INTERVAL == 0 and 86400 % torrc.VOTING_INTERVAL == 0


def test_client_has_socks_and_no_orport() -> None:
    opts = _options(_torrc("client"))
    assert opts["SocksPort"] == ["127.0.0.10:21002"]
    assert "ORPort" not in opts and "Schedulers" not in opts


def test_every_option_group_has_a_reason() -> None:
    lines = _torrc("auth0")
    # Each option follows a comment or another option of the same group: no block starts bare.
    for prev, line in zip(lines, lines[1:], strict=False):
        if line and not line.startswith("#"):
            assert prev.startswith("#") or (prev and not prev.startswith("#")), line
    assert sum(line.startswith("#") for line in lines) >= 10


def test_client_path_pinned_by_fingerprint() -> None:
    text = SCENARIO.replace('[[clients]]\nname = "client"',
                            '[[clients]]\nname = "client"\nentry_nodes = ["guard"]\nmiddle_nodes = ["kist"]\n'
                            'exit_nodes = ["exit"]')
    net = parse_scenario(tomllib.loads(text), "t.toml")
    _, layout, keys = _setup()
    opts = _options(torrc.render(net, net.clients[0], layout, keys).splitlines())
    assert opts["EntryNodes"] == [f"${3:040X}"] and opts["MiddleNodes"] == [f"${4:040X}"]
    assert opts["ExitNodes"] == [f"${6:040X}"]


def test_middle_pin_alone_names_the_guards() -> None:
    """tor looks for guards among MiddleNodes unless EntryNodes is set: set it for the client."""
    text = SCENARIO.replace('[[clients]]\nname = "client"', '[[clients]]\nname = "client"\nmiddle_nodes = ["kist"]')
    net = parse_scenario(tomllib.loads(text), "t.toml")
    _, layout, keys = _setup()
    opts = _options(torrc.render(net, net.clients[0], layout, keys).splitlines())
    assert opts["EntryNodes"] == [f"${3:040X},${6:040X}"]  # the vote_guard relays


def test_consensus_params_are_voted_by_the_authorities_only() -> None:
    import dataclasses

    net, layout, keys = _setup()
    net = dataclasses.replace(net, consensus_params=(("cellq_low", 5), ("orconn_high", 1028)))
    by_name = {n.name: n for n in net.nodes}
    auth = _options(torrc.render(net, by_name["auth0"], layout, keys).splitlines())
    assert auth["ConsensusParams"] == ["cellq_low=5 orconn_high=1028"]
    relay = _options(torrc.render(net, by_name["kist"], layout, keys).splitlines())
    assert "ConsensusParams" not in relay
    assert "ConsensusParams" not in _options(_torrc("auth0"))  # none asked, none voted


def test_vote_stable_is_voted_by_the_authorities_only() -> None:
    import dataclasses

    net, layout, keys = _setup()
    by_name = {n.name: n for n in net.nodes}
    assert "AuthDirVoteStableGuaranteeMinUptime" not in _options(_torrc("auth0"))  # not asked: the median decides
    net = dataclasses.replace(net, vote_stable=True)
    auth = _options(torrc.render(net, by_name["auth0"], layout, keys).splitlines())
    assert auth["AuthDirVoteStableGuaranteeMinUptime"] == ["0"]
    relay = _options(torrc.render(net, by_name["kist"], layout, keys).splitlines())
    assert "AuthDirVoteStableGuaranteeMinUptime" not in relay
