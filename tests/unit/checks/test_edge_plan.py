"""The edge scenario's plan, without running it: every fault names a node of the scenario,
and the EINVAL fault lands in a KIST period that lasts to the end (Tor exits on the next
scheduler change once KIST lost kernel support, scheduler.c:296-307)."""

from __future__ import annotations

from harness.checks.edge import ARMS, DURATION_S, PERIOD_S, plan
from harness.config import load_scenario, scenario_path
from harness.control.abtest import parse_arms
from harness.run.phase import HeldSchedule


def test_every_fault_targets_a_node_of_the_edge_scenario() -> None:
    names = {n.name for n in load_scenario(str(scenario_path("edge"))).nodes}
    p = plan()
    assert {f.node for f in p.faults} <= names
    assert {f.action for f in p.faults} == {"stop", "starve", "kill", "drop", "strace", "churn"}
    assert all(0 < f.at_s < DURATION_S for f in p.faults)


def test_the_churn_goes_from_a_client_through_patched_relays_only() -> None:
    from harness.config import Binary, Role

    by_name = {n.name: n for n in load_scenario(str(scenario_path("edge"))).nodes}
    [churn] = [f for f in plan().faults if f.action == "churn"]
    assert by_name[churn.node].role is Role.CLIENT
    hops = churn.detail.split()[0].split(",")
    assert len(hops) == 3 and all(by_name[h].binary is Binary.PATCHED for h in hops)
    assert by_name[hops[-1]].role is Role.EXIT


def test_the_einval_fault_falls_in_the_last_kist_period() -> None:
    p = plan()
    sched = HeldSchedule(parse_arms(ARMS), PERIOD_S, p.seed, DURATION_S)
    [einval] = [f for f in p.faults if "EINVAL" in f.detail]
    assert sched.slot_at(einval.at_s).arm.name == "KIST"
    assert sched.slot_at(DURATION_S - 1e-3).start <= einval.at_s
    assert {a.name for a in parse_arms(ARMS)} >= {"KIST", "KISTLite", "Vanilla"}
