"""The scenario description: shipped scenarios load, bad input names file, table and field."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from harness.config import Binary, Network, Profile, Role, Scheduler, load_scenario, parse_scenario
from harness.errors import InputError

MINIMAL = """
[authorities]
count = 3
vote_guard = true
[[relays]]
name = "exit"
role = "exit"
count = 2
"""


def _parse(text: str) -> Network:
    return parse_scenario(tomllib.loads(text), "test.toml")


def test_basic_is_chutney_shape() -> None:
    net = load_scenario("basic")
    assert len(net.authorities) == 3
    assert len(net.by_role(Role.EXIT)) == 5
    assert len(net.clients) == 2
    assert [s.name for s in net.fileservers] == ["server"]


def test_default_has_kist_and_vanilla_arms() -> None:
    net = load_scenario("default")
    scheds = {n.scheduler for n in net.relays if n.binary is Binary.PATCHED}
    assert scheds == {Scheduler.KIST, Scheduler.VANILLA}
    assert {c.profile for c in net.clients} <= {Profile.WEB, Profile.BULK, Profile.PERF}
    assert net.fileservers


def test_description_is_frozen() -> None:
    net = _parse(MINIMAL)
    with pytest.raises(AttributeError):
        net.name = "x"  # type: ignore[misc]


def test_names_are_indexed_per_group() -> None:
    net = _parse(MINIMAL)
    assert [n.name for n in net.nodes] == ["auth0", "auth1", "auth2", "exit0", "exit1"]


def test_relay_fields_reach_the_node() -> None:
    net = _parse(MINIMAL + """
[[relays]]
name = "mid"
role = "middle"
scheduler = "kistlite"
kist_sched_run_interval_ms = 5
kist_sock_buf_size_factor = 2
binary = "patched"
bandwidth_rate_kib = 100
bandwidth_burst_kib = 200
[relays.shaping]
rate_mbit = 1
loss_percent = 0.5
optional = true
""")
    mid = next(n for n in net.nodes if n.name == "mid")
    assert (mid.role, mid.scheduler, mid.kist_run_interval_ms, mid.kist_sock_buf_size_factor) == (
        Role.MIDDLE, Scheduler.KISTLITE, 5, 2.0)
    assert (mid.binary, mid.bandwidth_rate_kib, mid.bandwidth_burst_kib) == (Binary.PATCHED, 100, 200)
    assert mid.shaping.rate_mbit == 1.0 and mid.shaping.loss_percent == 0.5 and mid.shaping.optional
    assert mid.shaping.latency_ms is None


@pytest.mark.parametrize(("text", "where", "needle"), [
    ("[authorities]\ncount = 2\n[[relays]]\nrole='exit'\ncount=3\nvote_guard=true", "[authorities]", "at least 3"),
    (MINIMAL + "[[relays]]\nname='g'\n", "[relays[1]]", "'role' is missing"),
    (MINIMAL + "[[relays]]\nrole='authority'\n", "[relays[1]]", "relays are"),
    (MINIMAL + "[[relays]]\nrole='middle'\nscheduler='FIFO'\n", "[relays[1]]", "'FIFO' is not one of"),
    (MINIMAL + "[[relays]]\nrole='middle'\nkist_sched_run_interval_ms=500\n", "[relays[1]]", "1..100"),
    (MINIMAL + "[[relays]]\nrole='middle'\nscheduler='Vanilla'\nkist_sock_buf_size_factor=1.0\n",
     "[relays[1]]", "no effect"),
    (MINIMAL + "[[relays]]\nrole='middle'\nbandwidth_rate_kib=10\n", "[relays[1]]", "at least 75"),
    (MINIMAL + "[[relays]]\nrole='middle'\nconstrained_sock_kib=1\n", "[relays[1]]", "2..256"),
    (MINIMAL + "[[relays]]\nrole='middle'\nbandwidth_rate_kib=100\nbandwidth_burst_kib=50\n",
     "[relays[1]]", ">= it"),
    (MINIMAL + "[[relays]]\nrole='middle'\ncolour='red'\n", "[relays[1]]", "unknown field(s) colour"),
    (MINIMAL + "[[relays]]\nrole='middle'\ncount=true\n", "[relays[1]]", "must be int"),
    (MINIMAL + "[[relays]]\nrole='middle'\nname='bad name'\n", "[relays[1]]", "letters or digits"),
    (MINIMAL + "[[relays]]\nrole='middle'\n[relays.shaping]\nloss_percent=150\n", "[relays[1].shaping]", "< 100"),
    (MINIMAL + "[[clients]]\nprofile='web'\n", "[fileservers]", "no [[fileservers]]"),
    (MINIMAL + "[[clients]]\nname='exit0'\n", "[top level]", "repeated: exit0"),
    ("[authorities]\n[[relays]]\nrole='middle'\ncount=3\nvote_guard=true", "[relays]", "has 0 exit(s)"),
    ("[authorities]\nvote_guard=true\n[[relays]]\nrole='exit'\n", "[relays]", "has 1 exit(s)"),
    ("[authorities]\n[[relays]]\nrole='exit'\ncount=3\n", "[relays]", "0 relay(s) get the Guard flag"),
    ("[authorities]\n[[relays]]\nrole='exit'\ncount=2\n[[relays]]\nrole='guard'\n[[relays]]\nrole='middle'\n",
     "[relays]", "1 relay(s) get the Guard flag (guard)"),
    (MINIMAL + "[[clients]]\nname='c'\nexit_nodes=['auth0']\n", "[clients (node c)]", "not an exit"),
    (MINIMAL + "[[clients]]\nname='c'\nmiddle_nodes=['nosuch']\n", "[clients (node c)]", "'nosuch'"),
    (MINIMAL + "[[clients]]\nname='c'\nentry_nodes=[1]\n", "[clients[0]]", "list of node names"),
    (MINIMAL + "[traffic]\nduration_s = 0\n", "[traffic]", "duration_s must be > 0"),
    (MINIMAL + "[network]\nspeed = 3\n", "[network]", "unknown field(s) speed"),
    (MINIMAL + "[network]\nconsensus_params = { 'orconn high' = 1 }\n", "[network]", "not a consensus parameter"),
    (MINIMAL + "[network]\nconsensus_params = { orconn_high = 1.5 }\n", "[network]", "32-bit integer"),
    (MINIMAL + "[network]\nconsensus_params = { orconn_high = 4294967296 }\n", "[network]", "32-bit integer"),
])
def test_bad_scenarios_name_file_table_field(text: str, where: str, needle: str) -> None:
    with pytest.raises(InputError) as info:
        _parse(text)
    msg = str(info.value)
    assert msg.startswith(f"scenario test.toml, {where}:"), msg
    assert needle in msg


def test_load_reports_toml_syntax_with_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[authorities\n")
    with pytest.raises(InputError, match=r"bad.toml: not valid TOML"):
        load_scenario(bad)


def test_unknown_scenario_lists_shipped_ones() -> None:
    with pytest.raises(InputError, match=r"basic.*default|default.*basic"):
        load_scenario("no-such-scenario")


# ---------------------------------------------------------------- load and loss variants


def test_variants_parse_in_order_with_their_conditions() -> None:
    net = _parse(MINIMAL + """
[[variants]]
name = "loss1"
loss_percent = 1.0
[[variants]]
name = "load2"
load_scale = 2
duration_s = 30
""")
    assert [v.name for v in net.variants] == ["loss1", "load2"]
    loss, load = net.variants
    assert loss.client_shaping.loss_percent == 1.0 and loss.load_scale == 1.0 and loss.duration_s is None
    assert load.load_scale == 2.0 and load.duration_s == 30.0 and not load.client_shaping.requested
    assert loss.describe() == "loss 1% on client links" and load.describe() == "load x2"


def test_scenario_without_variants_has_none() -> None:
    assert _parse(MINIMAL).variants == ()


@pytest.mark.parametrize(("text", "where", "needle"), [
    ("[[variants]]\nloss_percent = 1\n", "[variants[0]]", "'name' is missing"),
    ("[[variants]]\nname = 'base'\nload_scale = 2\n", "[variants[0]]", "other than 'base'"),
    ("[[variants]]\nname = 'Loss 1'\nload_scale = 2\n", "[variants[0]]", "lower-case letters"),
    ("[[variants]]\nname = 'a'\nload_scale = 2\n[[variants]]\nname = 'a'\nload_scale = 3\n", "[variants[1]]",
     "used by an earlier variant"),
    ("[[variants]]\nname = 'a'\n", "[variants[0]]", "changes nothing"),
    ("[[variants]]\nname = 'a'\nload_scale = 0\n", "[variants[0]]", "load_scale must be > 0"),
    ("[[variants]]\nname = 'a'\nload_scale = 100\n", "[variants[0]]", "<= 16"),
    ("[[variants]]\nname = 'a'\nload_scale = true\n", "[variants[0]]", "must be int or float"),
    ("[[variants]]\nname = 'a'\nloss_percent = 100\n", "[variants[0]]", "loss_percent must be > 0 and < 100"),
    ("[[variants]]\nname = 'a'\nrate_mbit = 0\n", "[variants[0]]", "rate_mbit must be between"),
    ("[[variants]]\nname = 'a'\nload_scale = 2\nduration_s = -1\n", "[variants[0]]", "duration_s must be > 0"),
    ("[[variants]]\nname = 'a'\nload_scale = 2\noptional = true\n", "[variants[0]]", "unknown field(s) optional"),
    ("[variants]\nname = 'a'\n", "[variants]", "must be an array of tables ([[variants]])"),
])
def test_bad_variants_name_file_table_field(text: str, where: str, needle: str) -> None:
    with pytest.raises(InputError) as info:
        _parse(MINIMAL + text)
    msg = str(info.value)
    assert msg.startswith(f"scenario test.toml, {where}:"), msg
    assert needle in msg


def test_consensus_params_reach_the_description() -> None:
    net = _parse(MINIMAL + "[network]\nconsensus_params = { orconn_high = 1028, cellq_low = 5 }\n")
    assert net.consensus_params == (("cellq_low", 5), ("orconn_high", 1028))
    assert _parse(MINIMAL).consensus_params == ()


def test_vote_stable_is_a_bool() -> None:
    assert _parse(MINIMAL + "[network]\nvote_stable = true\n").vote_stable is True
    assert _parse(MINIMAL).vote_stable is False
    with pytest.raises(InputError) as info:
        _parse(MINIMAL + "[network]\nvote_stable = 1\n")
    assert "'vote_stable' must be bool" in str(info.value)
