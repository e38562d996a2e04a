"""The run's phases without a network: which variants run where, how load scales, how the
arm period is chosen against the downloads, and how downloads across a switch are counted."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass

import pytest

from harness.config import Network, Variant, load_scenario, parse_scenario
from harness.control.abtest import Schedule, parse_arms
from harness.errors import StepError
from harness.network import shaping
from harness.network.docker import DockerBackend
from harness.network.running import ShapingInForce
from harness.network.shaping import KernelShaping
from harness.run import phase, variants
from harness.traffic.clients import MIB

MINIMAL_WITH_CLIENTS = """
[authorities]
vote_guard = true
[[relays]]
role = "exit"
count = 2
[[relays]]
name = "mid"
role = "middle"
binary = "patched"
bandwidth_rate_kib = 200
[[relays]]
name = "other"
role = "middle"
binary = "patched"
bandwidth_rate_kib = 1000
[[clients]]
name = "w"
profile = "web"
count = 2
[[clients]]
name = "b"
profile = "bulk"
middle_nodes = ["mid"]
[[clients]]
name = "idle"
[[fileservers]]
"""

WITH_VARIANTS = """
[[variants]]
name = "load2"
load_scale = 2.0
[[variants]]
name = "loss1"
loss_percent = 1.0
"""


def _net(extra: str = WITH_VARIANTS) -> Network:
    text = load_scenario("default").source
    with open(text, "rb") as fh:
        data = tomllib.load(fh)
    data.update(tomllib.loads(extra))
    return parse_scenario(data, "test.toml")


def test_local_backend_skips_shaping_variants_and_says_why() -> None:
    phases = variants.phases(_net(), "local", kernel=lambda: pytest.fail("local must not probe the kernel"))
    assert [(p.name, bool(p.skipped)) for p in phases] == [("base", False), ("load2", False), ("loss1", True)]
    assert "local backend cannot shape client links" in phases[2].skipped
    assert "--backend docker" in phases[2].skipped


def test_docker_skips_what_the_kernel_cannot_do() -> None:
    no_statistic = KernelShaping(tbf=True, htb=True, netem=False, statistic=False, detail="statistic: no module")
    phases = variants.phases(_net(), "docker", kernel=lambda: no_statistic)
    assert phases[2].skipped.endswith("cannot do loss shaping (statistic: no module)")
    full = KernelShaping(True, True, True, True)
    assert [p.skipped for p in variants.phases(_net(), "docker", kernel=lambda: full)] == ["", "", ""]


@pytest.mark.parametrize(("scale", "loops", "factor"), [(1.0, 1, 1.0), (2.0, 2, 1.0), (1.5, 2, 4 / 3),
                                                        (0.5, 1, 2.0)])
def test_load_scale_is_loops_and_pauses(scale: float, loops: int, factor: float) -> None:
    got = variants.client_load(scale)
    assert got[0] == loops and got[1] == pytest.approx(factor)
    # offered load of a web client: loops / (mean pause * factor) = scale / mean pause
    assert got[0] / got[1] == pytest.approx(scale)


def test_variant_shaping_adds_to_the_base_and_restores_it() -> None:
    base = ShapingInForce("webk", rate_mbit=10.0)
    cmds = shaping.commands(variants.combined_shaping(
        base, Variant("loss1", client_shaping=_net().variants[1].client_shaping), "webk"))
    assert cmds[0][:9] == ["tc", "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", "10mbit"]
    assert cmds[1][-6:] == ["--mode", "random", "--probability", "0.010000", "-j", "DROP"]
    assert shaping.commands(base) == cmds[:1]  # what re-shaping puts back after the variant


def test_default_period_fits_the_bulk_download() -> None:
    longest = phase.expected_longest_s(load_scenario("default"))
    assert longest is not None and longest[0] == 5 * MIB
    assert longest[1] == pytest.approx(10.0)  # 5 MiB at half the relay's 1024 KiB/s (web and bulk share it)
    assert phase.choose_period(None, 120.0, 2, longest) == (30.0, "")  # every arm twice
    assert phase.choose_period(None, 60.0, 2, longest) == (30.0, "")   # 15 s would cut them: once
    period, warning = phase.choose_period(None, 30.0, 2, longest)
    assert period == 15.0 and "pass --duration 40 or more" in warning
    assert phase.choose_period(None, 60.0, 2, None) == (15.0, "")  # no rate set: as many switches


def test_explicit_short_period_warns_with_a_better_one() -> None:
    period, warning = phase.choose_period(5.0, 60.0, 2, (5 * MIB, 5.0))
    assert period == 5.0
    assert "5 MiB" in warning and "pass --period 10 or more" in warning
    assert phase.choose_period(5.0, 60.0, 2, None) == (5.0, "")


def test_unpinned_clients_share_every_relay() -> None:
    net = parse_scenario(tomllib.loads(MINIMAL_WITH_CLIENTS), "t.toml")
    longest = phase.expected_longest_s(net)
    assert longest == (5 * MIB, pytest.approx(5 * MIB / (200 * 1024 / 3)))  # 3 clients through mid


def test_load_lengthens_the_expected_download() -> None:
    one = phase.expected_longest_s(load_scenario("default"))
    two = phase.expected_longest_s(load_scenario("default"), loops=2)
    assert one and two and two[1] == pytest.approx(2 * one[1])


@dataclass(frozen=True)
class _D:
    size: int
    start: float
    ttlb_s: float | None


def test_downloads_across_a_switch_are_not_attributed_and_counted() -> None:
    sched = Schedule(parse_arms("KIST,Vanilla"), 10.0, seed=1)
    t0 = 1000.0
    first = sched.slot_at(0).arm.name
    assert phase.attribute(sched, t0, t0 + 1.0, 2.0) == first
    assert phase.attribute(sched, t0, t0 + 8.0, 4.0) == phase.STRADDLE
    assert phase.attribute(sched, t0, t0 + 8.0, None) == first  # failed before any byte: its start
    downloads = [_D(5 * MIB, t0 + 8.0, 12.0), _D(5 * MIB, t0 + 1.0, 6.0), _D(327680, t0, 1.0)]
    arms = [phase.attribute(sched, t0, d.start, d.ttlb_s) for d in downloads]
    note = phase.straddle_note("base", 10.0, downloads, arms)
    assert note.startswith("base: 1 of 3 downloads ran across an arm switch (period 10 s)")
    assert "5 MiB: 1 of 2, median TTLB 9.0 s" in note and "320 KiB: 0 of 1" in note
    assert "pass --period 24 or more" in note
    assert phase.straddle_note("base", 10.0, downloads[1:], arms[1:]) == ""



class _Container:
    """Stands in for a Docker container: records each exec, fails the ones told to."""

    def __init__(self, name: str, fail: tuple[str, ...] = ()) -> None:
        self.name, self.fail, self.ran = name, fail, []

    def exec_run(self, argv: list[str]) -> tuple[int, bytes]:
        self.ran.append(argv)
        return (1, b"RTNETLINK answers: No such file") if argv[0] in self.fail else (0, b"")


@dataclass(frozen=True)
class _Node:
    name: str
    container: str


@dataclass(frozen=True)
class _Handle:
    backend: str
    clients: tuple[_Node, ...]
    shaping: tuple[ShapingInForce, ...] = ()


def test_shaping_is_in_force_for_the_phase_and_the_base_comes_back_after_a_failure() -> None:
    loss = _net().variants[1]
    conts = {"c-webk": _Container("c-webk", fail=("tc",)), "c-bulkk": _Container("c-bulkk")}
    handle = _Handle("docker", (_Node("webk", "c-webk"), _Node("bulkk", "c-bulkk")),
                     (ShapingInForce("bulkk", rate_mbit=5.0),))
    with pytest.raises(RuntimeError), variants.in_force(handle, loss, DockerBackend(conts.__getitem__)) as lines:
        assert lines == ["webk: loss 1% on client links", "bulkk: loss 1% on client links"]
        assert any("statistic" in a for a in conts["c-webk"].ran[-1])  # a failed reset is harmless
        raise RuntimeError("traffic failed")
    webk, bulkk = conts["c-webk"].ran, conts["c-bulkk"].ran
    assert webk[-2:] == [["tc", "qdisc", "del", "dev", "eth0", "root"], ["iptables", "-F", "OUTPUT"]]
    assert bulkk[-1][:9] == ["tc", "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", "5mbit"]
    assert not any("statistic" in a for a in bulkk[-3:])


def test_a_failing_shaping_command_names_node_and_command() -> None:
    conts = {"c-webk": _Container("c-webk", fail=("iptables",))}
    handle = _Handle("docker", (_Node("webk", "c-webk"),))
    with pytest.raises(StepError, match=r"shaping webk failed: `iptables -A OUTPUT .*` exited 1 in c-webk"), \
            variants.in_force(handle, _net().variants[1], DockerBackend(conts.__getitem__)):
        pass


def test_load_variants_need_no_shaping() -> None:
    with variants.in_force(_Handle("local", ()), _net().variants[0]) as lines:
        assert lines == []


def test_the_last_arm_is_held_while_downloads_in_flight_finish() -> None:
    held = phase.HeldSchedule(parse_arms("KIST,Vanilla"), 15.0, seed=4, duration_s=60.0)
    plain = Schedule(parse_arms("KIST,Vanilla"), 15.0, seed=4)
    last = plain.slot_at(59.0)
    assert held.slot_at(59.0) == last and held.slot_at(75.0) == last and held.slot_at(60.0) == last
    assert plain.slot_at(60.0) != last and held.slot_at(10.0) == plain.slot_at(10.0)
    # a bulk download started 5 s before the end stays with its arm; one across 45 s does not
    assert phase.attribute(held, 0.0, 55.0, 12.0) == last.arm.name
    assert phase.attribute(held, 0.0, 40.0, 10.0) == phase.STRADDLE
