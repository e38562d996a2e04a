"""Shaping commands and plans, the state round trip, and timed downloads through SOCKS."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.config import Binary, Role, Scheduler, Shaping
from harness.errors import InputError
from harness.network import shaping
from harness.network.running import NodeInfo, RunningNetwork, ServerInfo, ShapingInForce
from harness.traffic import clients

NO_NETEM = shaping.KernelShaping(tbf=True, htb=True, netem=False, statistic=True, detail="netem: unknown qdisc")


def test_rate_only_is_one_tbf() -> None:
    cmds = shaping.commands(ShapingInForce("n", rate_mbit=1.0))
    assert cmds == [["tc", "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", "1mbit",
                     "burst", "15000", "latency", "50ms"]]


def test_loss_is_iptables_statistic() -> None:
    (cmd,) = shaping.commands(ShapingInForce("n", loss_percent=2.5))
    assert cmd[:3] == ["iptables", "-A", "OUTPUT"]
    assert cmd[cmd.index("--probability") + 1] == "0.025000"


def test_latency_with_rate_chains_tbf_under_netem() -> None:
    cmds = shaping.commands(ShapingInForce("n", rate_mbit=10, latency_ms=20))
    assert cmds[0][6:10] == ["handle", "1:", "netem", "delay"]
    assert cmds[1][5:7] == ["parent", "1:1"]


def test_burst_covers_ten_ms_at_high_rates() -> None:
    assert shaping.tbf_burst_bytes(1000) == 1_250_000


def test_required_latency_without_netem_fails_clearly() -> None:
    with pytest.raises(InputError, match=r"node r1 asks for latency shaping.*optional = true"):
        shaping.plan("r1", Shaping(rate_mbit=1, latency_ms=10), NO_NETEM, "s.toml")


def test_optional_latency_is_recorded_as_skipped() -> None:
    got = shaping.plan("r1", Shaping(rate_mbit=1, latency_ms=10, optional=True), NO_NETEM, "s.toml")
    assert got == ShapingInForce("r1", rate_mbit=1, skipped=("latency",))


def test_running_network_round_trips_through_json() -> None:
    node = NodeInfo("exit0", Role.EXIT, "127.0.0.5", 21003, Path("/r/c"), Path("/r/d"), Path("/r/l"),
                    "AB" * 20, Scheduler.KISTLITE, Binary.PATCHED, socks=None, pid=42)
    client = NodeInfo("c", Role.CLIENT, "127.0.0.6", 21003, Path("/r/c2"), Path("/r/d2"), Path("/r/l2"),
                      None, Scheduler.KIST, Binary.STOCK, socks=("127.0.0.6", 21002), pid=43)
    net = RunningNetwork("basic", "basic-1", "local", Path("/tmp/kist-net-x"), "basic.toml", (node, client),
                         (ServerInfo("server", "127.0.0.7", 21004, pid=44),),
                         (ShapingInForce("exit0", 1.0, skipped=("latency",)),), timings={"verify_s": 0.1})
    text = net.to_json()
    assert "cookie" not in json.loads(text)  # paths only, never cookie contents
    assert RunningNetwork.from_json(text) == net


def test_corrupt_state_is_input_error() -> None:
    with pytest.raises(InputError, match="state file x"):
        RunningNetwork.from_json('{"version": 1}', "x")


# ---------------------------------------------------------------- traffic through a SOCKS5 relay


def test_fetch_times_a_download(proxy_and_server) -> None:  # type: ignore[no-untyped-def]
    socks, server, seen = proxy_and_server
    d = clients.fetch(socks, server, 320 * 1024, client="c0", profile="web", timeout=10)
    assert d.outcome == "ok", d.error
    assert d.received == 320 * 1024
    assert d.ttfb_s is not None and d.ttlb_s is not None and 0 < d.ttfb_s <= d.ttlb_s
    assert seen == [server]


def test_fetch_failure_is_recorded_not_raised() -> None:
    d = clients.fetch(("127.0.0.1", 1), ("127.0.0.1", 2), 10)
    assert d.outcome == "failed" and "ConnectionRefused" in d.error and d.ttlb_s is None


def test_run_client_writes_json_lines(proxy_and_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    socks, server, _ = proxy_and_server
    out = tmp_path / "c.jsonl"
    n = clients.run_client(socks, server, "perf", out, client="c1", duration_s=30, pause_scale=0,
                           size_scale=0.01, max_downloads=3)
    got = clients.read_results(out)
    assert n == 3 and [d.size for d in got] == [512, 10485, 52428]  # 50 KiB, 1 MiB, 5 MiB scaled
    assert all(d.outcome == "ok" for d in got)


def test_profiles_match_the_paper() -> None:
    assert clients.PROFILES["web"].sizes == (320 * 1024,) and clients.PROFILES["web"].pause_s == (1, 60)
    assert clients.PROFILES["bulk"].pause_s == (0, 0)
    sizes = [s for s, _ in zip(clients.schedule("perf", pause_scale=1, size_scale=1, seed=1), range(3),
                               strict=False)]
    assert [s for s, _ in sizes] == [50 * 1024, 1024 * 1024, 5 * 1024 * 1024]
    assert all(60 <= p <= 120 for _, p in sizes)


def test_local_backend_refuses_required_shaping_and_records_optional() -> None:
    import tomllib

    from harness.config import parse_scenario
    from harness.network.local import LocalBackend

    base = ("[authorities]\nvote_guard = true\n[[relays]]\nrole = 'exit'\ncount = 2\n[[fileservers]]\n"
            "[fileservers.shaping]\nrate_mbit = 2\n")
    with pytest.raises(InputError, match=r"s.toml: node server asks for link shaping.*--backend docker"):
        LocalBackend().plan_shaping(parse_scenario(tomllib.loads(base), "s.toml"))
    net = parse_scenario(tomllib.loads(base + "optional = true\n"), "s.toml")
    assert LocalBackend().plan_shaping(net) == (ShapingInForce("server", skipped=("rate",)),)
