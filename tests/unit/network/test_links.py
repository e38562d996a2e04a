"""The [links] description, the delay line's decisions and the iptables rules, as data.

The measured behaviour (RTT, loss, rate through the real NFQUEUE) is in
tests/integration/network/test_links.py; here: what is configured, and refused.
"""

from __future__ import annotations

import math
import socket
import tomllib
from pathlib import Path

import pytest

from harness.config import Network, load_scenario, parse_scenario
from harness.errors import InputError
from harness.network import hostcaps, linkapply, linkemu
from harness.network.delayline import PairParams, Schedule, parse_config
from harness.network.linkprobe import binomial_interval
from harness.network.links import Preset, paper_loss

BASE = """
[authorities]
count = 3
vote_guard = true
[[relays]]
name = "exit"
role = "exit"
count = 2
[[clients]]
name = "cli"
[[fileservers]]
name = "srv"
"""


def _net(links: str) -> Network:
    return parse_scenario(tomllib.loads(BASE + links), "t.toml")


def _path(net: Network, a: str, b: str) -> linkapply.PathParams:
    assert net.links is not None
    return next(p for p in linkapply.paths(net, net.links) if (p.src, p.dst) == (a, b))


def test_no_links_table_means_none() -> None:
    assert _net("").links is None
    assert linkapply.check(_net(""), "local") is None


def test_access_links_add_and_specific_wins() -> None:
    net = _net("""
[links]
latency_ms = 5
loss_percent = 1
[links.classes.client]
latency_ms = 20
[links.classes.relay]
jitter_ms = 3
[links.nodes.exit0]
latency_ms = 7
rate_mbit = 10
""")
    p = _path(net, "cli", "exit0")
    assert p.latency_ms == 27                                   # client class 20 + node 7
    assert p.loss_percent == pytest.approx(100 * (1 - 0.99 ** 2))
    assert p.rate_mbit == 10
    assert p.jitter_ms == 3                                     # hypot(0, 3)
    q = _path(net, "exit0", "exit1")
    assert q.latency_ms == 12 and q.jitter_ms == pytest.approx(math.hypot(3, 3))
    assert q.rtt_ms == 24


def test_region_matrix_and_pair_override() -> None:
    net = _net("""
[links]
latency_ms = 1
[links.regions]
eu = ["auth0", "exit0"]
us = ["auth1", "exit1", "cli", "srv"]
[links.matrix]
eu-us = 40
us-us = 3
[[links.pairs]]
a = "exit1"
b = "srv"
latency_ms = 0.5
loss_percent = 2
""")
    assert _path(net, "auth0", "exit1").latency_ms == 42
    assert _path(net, "exit1", "auth0").latency_ms == 42       # symmetric
    assert _path(net, "auth0", "exit0").latency_ms == 2         # eu-eu not given: no core latency
    assert _path(net, "cli", "exit1").latency_ms == 5           # us-us 3 + both access links
    srv = _path(net, "srv", "exit1")
    assert (srv.latency_ms, srv.loss_percent) == (0.5, 2)


@pytest.mark.parametrize(("lat", "normal", "high"), [(0, 0, 0), (30, 0.15, 0.3), (150, 0.75, 1.5),
                                                      (300, 1.5, 3.0), (450, 1.5, 3.0)])
def test_paper_loss_model(lat: float, normal: float, high: float) -> None:
    assert paper_loss(lat, Preset.PAPER) == pytest.approx(normal)
    assert paper_loss(lat, Preset.PAPER_HIGH_LOSS) == pytest.approx(high)


def test_paper_preset_caps_latency_and_derives_loss() -> None:
    net = _net("""
[links]
preset = "paper"
latency_ms = 200
[[links.pairs]]
a = "cli"
b = "exit0"
loss_percent = 0.5
""")
    p = _path(net, "auth0", "auth1")
    assert p.latency_ms == 300 and p.loss_percent == pytest.approx(1.5)
    assert _path(net, "cli", "exit0").loss_percent == 0.5       # an explicit loss wins over the model
    high = _net('[links]\npreset = "paper-high-loss"\nlatency_ms = 50\n')
    assert _path(high, "auth0", "auth1").loss_percent == pytest.approx(2 * 100 / 300 * 1.5)


def test_default_scenario_has_the_paper_model() -> None:
    net = load_scenario("default")
    assert net.links is not None and net.links.preset is Preset.PAPER
    assert net.links.congestion == "cubic" and net.links.congestion_optional and net.links.optional
    lat = {(p.src, p.dst): p.latency_ms for p in linkapply.paths(net, net.links)}
    assert lat[("webk", "guard")] == 50 and lat[("kist", "exit0")] == 20 and lat[("vanilla", "exit0")] == 20


@pytest.mark.parametrize(("links", "names"), [
    ("[links]\nlatency = 5\n", ["[links]", "latency"]),
    ("[links]\nlatency_ms = -1\n", ["[links]", "latency_ms"]),
    ("[links]\nlatency_ms = true\n", ["[links]", "latency_ms"]),
    ("[links]\nloss_percent = 100\n", ["[links]", "loss_percent"]),
    ("[links]\npreset = \"shadow\"\n", ["[links]", "preset", "paper"]),
    ("[links]\nmechanism = \"tc\"\n", ["mechanism", "delayline"]),
    ("[links]\nmss = 100\n", ["mss"]),
    ("[links.classes.bridge]\nlatency_ms = 1\n", ["links.classes", "bridge"]),
    ("[links.nodes.nosuch]\nlatency_ms = 1\n", ["links.nodes", "nosuch"]),
    ("[links.nodes.cli]\nrate_mbit = 0\n", ["links.nodes.cli", "rate_mbit"]),
    ("[links.regions]\neu = [\"nosuch\"]\n", ["links.regions", "nosuch"]),
    ("[links.regions]\neu = [\"cli\"]\nus = [\"cli\"]\n", ["two regions"]),
    ("[links.regions]\neu = [\"cli\"]\n[links.matrix]\neu-mars = 3\n", ["links.matrix", "eu-mars"]),
    ("[[links.pairs]]\na = \"cli\"\nb = \"cli\"\nlatency_ms = 1\n", ["links.pairs[0]", "same node"]),
    ("[[links.pairs]]\na = \"cli\"\nb = \"srv\"\n", ["links.pairs[0]", "sets nothing"]),
    ("[[links.pairs]]\na = \"cli\"\nb = \"x\"\nlatency_ms = 1\n", ["links.pairs[0]", "'b'"]),
])
def test_bad_links_name_the_field(links: str, names: list[str]) -> None:
    with pytest.raises(InputError) as exc:
        _net(links)
    msg = str(exc.value)
    assert "t.toml" in msg and "\n" not in msg
    for n in names:
        assert n in msg


def test_impossible_links_refuse_unless_optional() -> None:
    with pytest.raises(InputError, match=r"\[links\] \(latency_ms\).*mechanism = \"auto\".*optional = true"):
        linkapply.check(_net("[links]\nlatency_ms = 5\nmechanism = \"netem\"\n"), "local")
    plan = linkapply.check(_net("[links]\nlatency_ms = 5\nmechanism = \"netem\"\noptional = true\n"), "docker")
    assert plan is not None and plan.mechanism == "none" and plan.skipped == ("latency_ms",)
    assert "none in force" in plan.summary()


def test_netem_mechanism_is_refused_with_the_way_out() -> None:
    with pytest.raises(InputError, match="mechanism = \"auto\""):
        linkapply.check(_net("[links]\nlatency_ms = 5\nmechanism = \"netem\"\n"), "local")


# ---------------------------------------------------------------- the delay line's decisions

A, B = socket.inet_aton("10.0.0.1"), socket.inet_aton("10.0.0.2")


def test_constant_delay_and_unshaped_pairs() -> None:
    s = Schedule({(A, B): PairParams(latency_ms=25)})
    assert s.decide((A, B), 1500, 100.0) == pytest.approx(100.025)
    assert s.decide((B, A), 1500, 100.0) == 100.0               # not in the table: at once


def test_jitter_never_reorders_a_direction() -> None:
    s = Schedule({(A, B): PairParams(latency_ms=30, jitter_ms=5)}, seed=3)
    times = [s.decide((A, B), 100, i * 1e-4) for i in range(200_000)]   # 20 s at 10,000 packets/s
    assert all(t is not None for t in times)
    assert times == sorted(times)
    delays = [t - i * 1e-4 for i, t in enumerate(times) if t is not None]
    mean = sum(delays) / len(delays)
    sd = math.sqrt(sum((d - mean) ** 2 for d in delays) / len(delays))
    assert 0.029 < mean < 0.0325            # the configured latency, not pushed up by holding order
    assert 0.004 < sd < 0.006               # the configured jitter


def test_rate_serialises_and_tail_drops() -> None:
    s = Schedule({(A, B): PairParams(rate_mbit=12, queue_ms=10.5)})
    # 1500 B at 12 Mbit/s is 1 ms each; a burst at t=0 queues up to 10 ms, then drops
    out = [s.decide((A, B), 1500, 0.0) for _ in range(15)]
    sent = [t for t in out if t is not None]
    assert sent[:3] == pytest.approx([0.001, 0.002, 0.003])
    assert len(sent) == 11 and s.counts[(A, B)][3] == 4


def test_loss_rate_within_binomial_interval() -> None:
    n, p = 100_000, 0.015
    s = Schedule({(A, B): PairParams(loss_percent=100 * p)}, seed=7)
    lost = sum(s.decide((A, B), 100, 0.0) is None for _ in range(n))
    lo, hi = binomial_interval(n, p)
    assert lo <= lost / n <= hi
    assert s.counts[(A, B)][2] == lost


def test_config_round_trip() -> None:
    q, seed, pairs = parse_config({"queue": 9, "seed": 4, "links": [
        {"src": "127.0.0.2", "dst": "127.0.0.3", "latency_ms": 5, "loss_percent": 1, "rate_mbit": None}]})
    assert (q, seed) == (9, 4)
    assert pairs[(socket.inet_aton("127.0.0.2"), socket.inet_aton("127.0.0.3"))] == PairParams(5, 0, 1, None)


def test_rules_are_tagged_with_the_run() -> None:
    tag = linkemu.tag_for("default-1234")
    argv = linkemu.rule_argv("-A", ["-i", "lo", "-p", "tcp"], tag, 3001)
    assert argv[argv.index("--comment") + 1] == tag and "--queue-bypass" in argv
    assert argv[argv.index("-t") + 1] == "mangle" and "PREROUTING" in argv
    mss = linkemu.mss_rule_argv("-A", ["-i", "lo", "-p", "tcp"], tag, 1448)
    assert mss.count("-p") == 1 and mss[-2:] == ["--set-mss", "1448"]
    assert linkemu._comment(["-A", "PREROUTING", "-m", "comment", "--comment", tag]) == tag


def test_congestion_control_per_namespace_only() -> None:
    from harness.network import hostcaps
    caps = hostcaps.probe()
    if not caps.delayline:
        pytest.skip(f"this host cannot run the delay line ({caps.detail}): nothing to choose between")
    with pytest.raises(InputError, match=r"congestion = 'nosuch' is not available"):
        linkapply.check(_net("[links]\nlatency_ms = 5\ncongestion = \"nosuch\"\n"), "docker")
    other = [c for c in caps.allowed_cc if c != caps.default_cc and c in caps.congestion_controls]
    if not other:
        pytest.skip("this kernel offers one congestion control only")
    text = f"[links]\nlatency_ms = 5\ncongestion = \"{other[0]}\"\n"
    with pytest.raises(InputError, match=r"\(congestion\).*host's network namespace.*--backend docker"):
        linkapply.check(_net(text), "local")
    plan = linkapply.check(_net(text), "docker")
    assert plan is not None and linkapply.sysctls(plan) == {"net.ipv4.tcp_congestion_control": other[0]}
    same = linkapply.check(_net(f"[links]\nlatency_ms = 5\ncongestion = \"{caps.default_cc}\"\n"), "local")
    assert same is not None and same.congestion == caps.default_cc and linkapply.sysctls(same) == {}


def test_bad_congestion_names_the_field() -> None:
    with pytest.raises(InputError, match=r"\[links\]: field 'congestion'"):
        _net("[links]\ncongestion = 3\n")


def test_env_line_says_what_was_in_force(tmp_path: Path) -> None:
    assert linkapply.env_line(tmp_path).startswith("none (no [links]")
    net = _net("[links]\npreset = \"paper\"\nlatency_ms = 30\n")
    assert net.links is not None
    plan = linkapply.LinksPlan("delayline", "netem no", linkapply.paths(net, net.links), congestion="cubic")
    linkapply.write_in_force(tmp_path, plan)
    line = linkapply.env_line(tmp_path)
    assert line.startswith("delayline: 42 directed paths, one way 60-60 ms, loss 0.3-0.3 %, TCP cubic")


def test_endpoints_learn_a_loopback_connections_real_source() -> None:
    from harness.network.delayline import Endpoints
    anon, a, b = (socket.inet_aton(x) for x in ("127.0.0.1", "127.0.0.2", "127.0.0.3"))

    def hdr(src: bytes, dst: bytes, sport: int, dport: int) -> bytes:
        return bytes([0x45, 0, 0, 60]) + b"\0" * 8 + src + dst + sport.to_bytes(2, "big") + dport.to_bytes(2, "big")

    ends = Endpoints({7: a}, anon)
    assert ends.key(hdr(a, b, 40000, 21000), 0) == (a, b)              # addresses say it all
    assert ends.key(hdr(anon, b, 40001, 21000), 7) == (a, b)           # from 127.0.0.1, marked as node a
    assert ends.key(hdr(b, anon, 21000, 40001), 0) == (b, a)           # the reply: the 4-tuple remembers a
    assert ends.key(hdr(b, anon, 21000, 40002), 0) == (b, anon)        # an unknown connection: as addressed
    assert ends.key(hdr(anon, b, 40003, 21000), 0) == (anon, b)        # unmarked (the harness itself)


def test_congestion_alone_may_be_optional() -> None:
    """The local backend cannot set CUBIC (one shared namespace): with optional = ["congestion"]
    the links stay in force and the plan records the host's congestion control instead."""
    toml = '[links]\nlatency_ms = 5\ncongestion = "{cc}"\n{opt}'
    caps = hostcaps.probe()
    if not caps.delayline or not caps.cgroup_mark:
        pytest.skip(f"this host cannot run the delay line for the local backend: {caps.detail}")
    other = next((c for c in caps.congestion_controls if c != caps.default_cc), None)
    if other is None:
        pytest.skip("the kernel has a single congestion control")
    with pytest.raises(InputError, match=r'\(congestion\).*local backend.*optional = \["congestion"\]'):
        linkapply.check(_net(toml.format(cc=other, opt="")), "local")
    for opt in ('optional = ["congestion"]\n', "optional = true\n"):  # optional = true keeps what it can
        plan = linkapply.check(_net(toml.format(cc=other, opt=opt)), "local")
        assert plan is not None and plan.mechanism == "delayline" and plan.skipped == ("congestion",)
        assert plan.congestion == caps.default_cc and not plan.set_congestion


def test_optional_list_names_only_congestion() -> None:
    with pytest.raises(InputError, match=r"optional.*\[\"congestion\"\].*'latency_ms'"):
        _net('[links]\nlatency_ms = 5\noptional = ["latency_ms"]\n')
