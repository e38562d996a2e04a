"""A/B arms, the interleaved schedule, the statistics and the per-arm summary."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from harness.checks import stats
from harness.checks.arms import summarize
from harness.commands.collect import parse_duration
from harness.control.abtest import Schedule, Switcher, parse_arms
from harness.control.transport import TcpTransport, UnixTransport, parse_control_address
from harness.errors import InputError
from harness.store.db import open_store
from harness.store.records import Context, Kind, Record


def test_parse_arms() -> None:
    kist, van = parse_arms("KIST,Vanilla")
    assert kist.settings == (("Schedulers", "KIST"),) and van.name == "Vanilla"
    a, b = parse_arms("fast:Schedulers=KIST;KISTSchedRunInterval=2,slow:KISTSchedRunInterval=10")
    assert a.settings == (("Schedulers", "KIST"), ("KISTSchedRunInterval", "2"))
    for bad in ("KIST", "KIST,KIST", "Foo,Vanilla", "a:ORPort=1,b:Schedulers=KIST",
                "a:KISTSchedRunInterval=500,KIST", "a:KISTSockBufSizeFactor=-1,KIST", "a:,KIST"):
        with pytest.raises(InputError):
            parse_arms(bad)


def test_schedule_blocks_are_permutations_and_seeded() -> None:
    arms = parse_arms("KIST,Vanilla,KISTLite")
    s1, s2 = Schedule(arms, 600, seed=42), Schedule(arms, 600, seed=42)
    for block in range(20):
        order = [s1.slot_at((block * 3 + i) * 600 + 1).arm.name for i in range(3)]
        assert sorted(order) == ["KIST", "KISTLite", "Vanilla"]
        assert order == [a.name for a in s2.order(block)]
    firsts = {s1.order(b)[0].name for b in range(20)}
    assert len(firsts) > 1, "order must vary between blocks"
    slot = s1.slot_at(3 * 600 + 700)
    assert (slot.block, slot.index, slot.start) == (1, 1, 3 * 600 + 600)
    assert Schedule(arms, 600, seed=1).order(0) != Schedule(arms, 600, seed=2).order(0) or \
        Schedule(arms, 600, seed=1).order(1) != Schedule(arms, 600, seed=2).order(1)


class FakeController:
    """Records SETCONF calls; stands in for tor only in this unit test."""

    def __init__(self) -> None:
        self.conf = {"Schedulers": ["KIST,KISTLite,Vanilla"], "KISTSchedRunInterval": ["0"]}
        self.calls: list[list[tuple[str, str]]] = []

    def get_conf_map(self, keys: list[str]) -> dict[str, list[str]]:
        return {k: self.conf[k] for k in keys}

    def set_options(self, settings: list[tuple[str, str]]) -> None:
        self.calls.append(settings)


def test_switcher_restores_what_was_there() -> None:
    c = FakeController()
    sw = Switcher(parse_arms("a:Schedulers=KIST;KISTSchedRunInterval=5,Vanilla"))
    assert sw.remember(c) == {"Schedulers": "KIST,KISTLite,Vanilla", "KISTSchedRunInterval": "0"}
    sw.apply(c, parse_arms("a:Schedulers=KIST;KISTSchedRunInterval=5,Vanilla")[0])
    sw.restore(c)
    assert c.calls[-1] == [("Schedulers", "KIST,KISTLite,Vanilla"), ("KISTSchedRunInterval", "0")]


def test_t_distribution_and_tests_against_known_values() -> None:
    assert stats.t_two_sided_p(2.0, 10) == pytest.approx(0.07339, abs=1e-4)
    assert stats.t_two_sided_p(1.959964, 1e7) == pytest.approx(0.05, abs=1e-4)
    w = stats.welch_t([1, 2, 3, 4, 5], [3, 4, 5, 6, 7, 8])
    assert w.statistic == pytest.approx(-2.4019, abs=1e-3) and w.df == pytest.approx(8.989, abs=1e-2)
    assert w.p_value == pytest.approx(0.0398, abs=1e-3)
    mw = stats.mann_whitney([1, 2, 3, 4, 5], [6, 7, 8, 9, 10])
    assert mw.statistic == 0 and mw.p_value == pytest.approx(0.01219, abs=1e-4)
    assert math.isnan(stats.welch_t([1], [2, 3]).p_value)
    assert stats.welch_t([1, 1], [1, 1]).p_value == 1.0


def test_bootstrap_ci_covers_the_mean() -> None:
    rng = random.Random(1)
    values = [rng.gauss(10, 2) for _ in range(200)]
    lo, hi = stats.bootstrap_ci(values)
    assert lo < 10 < hi and hi - lo < 1.2
    dlo, dhi = stats.bootstrap_diff_ci([v + 3 for v in values], values)
    assert dlo < 3 < dhi


def test_summary_finds_a_real_difference(tmp_path: Path) -> None:
    rng = random.Random(3)
    with open_store(tmp_path / "s.db") as s:
        t = 0.0
        for period in range(12):
            arm = "KIST" if period % 2 == 0 else "Vanilla"
            ctx = Context("r", arm=arm)
            items = [(ctx, Record(Kind.ARM, t, {"arm": arm}))]
            items.append((ctx, Record("CELL_STATS", t + 4, {"outbound_ms": 30, "outbound_cells": 10,
                                                           "inbound_ms": 0, "inbound_cells": 0})))
            items.append((ctx, Record("CELL_STATS", t + 5, {"outbound_ms": 10, "outbound_cells": 30,
                                                           "inbound_ms": 0, "inbound_cells": 0})))
            for pending, sockets, sock_ns in ((4, 4, 4000), (20, 20, 40000)):
                items.append((ctx, Record("KIST_OVERHEAD", t + 6, {
                    "pending": pending, "sockets": sockets if arm == "KIST" else 0,
                    "sock_ns": sock_ns if arm == "KIST" else 0, "run_ns": 50_000, "cells": 3})))
            for i in range(20):
                items.append((ctx, Record("BW", t + 3 + i, {"read": 0,
                               "written": int(rng.gauss(1000 if arm == "KIST" else 800, 50))})))
            s.write_batch(items)
            t += 30
        s.write_batch([(Context("r"), Record(Kind.END, t, {}))])
        arm_stats, comps = summarize(s, "r")
    by = {a.arm: a for a in arm_stats if a.metric == "goodput"}
    k = by["KIST"]
    assert k.blocks == 6 and abs(k.mean - 1000) < 40 and k.ci_low < k.mean < k.ci_high
    qt = {a.arm: a.mean for a in arm_stats if a.metric == "tor_queue_time_cellstats"}
    assert qt == {"KIST": 1.0, "Vanilla": 1.0}  # (30 + 10) ms / 40 cells, not a mean of ratios
    per_socket = {a.arm: a.mean for a in arm_stats if a.metric == "tcpinfo_per_socket"}
    assert per_socket == {"KIST": pytest.approx(44000 / 24 / 1000)}  # Vanilla reads no sockets
    assert {a.arm: a.mean for a in arm_stats if a.metric == "pending_sockets_per_run"} == \
        {"KIST": 12.0, "Vanilla": 12.0}
    (c,) = [c for c in comps if c.metric == "goodput"]
    assert c.blocks == 6 and c.ci_low < 200 < c.ci_high and c.p_value < 0.001


def test_durations_and_addresses() -> None:
    assert parse_duration("10m", "--period") == 600
    assert parse_duration("1h30m", "--d") == 5400 and parse_duration("90", "--d") == 90
    for bad in ("", "10x", "m", "0s", "-5m"):
        with pytest.raises(InputError):
            parse_duration(bad, "--d")
    t = parse_control_address("127.0.0.1:9051")
    assert isinstance(t, TcpTransport) and t.port == 9051
    assert isinstance(parse_control_address("/run/tor/control"), UnixTransport)
    assert parse_control_address("9051").describe() == "127.0.0.1:9051"
    for bad in ("localhost:notaport", "127.0.0.1:70000", ":9051"):
        with pytest.raises(InputError):
            parse_control_address(bad)
