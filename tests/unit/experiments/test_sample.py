"""Sampled scenarios: seeded, the paper's client mix, loadable, and the population readers."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from harness import cli
from harness.config import Profile, Role, load_scenario, parse_scenario
from harness.errors import InputError
from harness.experiments import population, sample
from harness.experiments.sample import SampleSpec

DATA = Path(__file__).parents[2] / "data" / "experiments"
CONSENSUS = DATA / "consensus-9-relays"


def test_same_seed_same_scenario_other_seed_other_relays() -> None:
    a = sample.sample(population.BUNDLED, SampleSpec(seed=7))
    assert a == sample.sample(population.BUNDLED, SampleSpec(seed=7))
    b = sample.sample(population.BUNDLED, SampleSpec(seed=8))
    assert [r["bandwidth_rate_kib"] for r in a["relays"]] != [r["bandwidth_rate_kib"] for r in b["relays"]]


def test_conditions_keep_the_relays_and_change_clients_and_loss() -> None:
    spec = dict(seed=3, network_scale=0.004, links="paper")
    base = sample.sample(population.BUNDLED, SampleSpec(**spec))            # type: ignore[arg-type]
    high = sample.sample(population.BUNDLED, SampleSpec(condition="high-load", **spec))  # type: ignore[arg-type]
    noloss = sample.sample(population.BUNDLED, SampleSpec(condition="no-loss", **spec))  # type: ignore[arg-type]
    assert base["relays"] == high["relays"]
    virt = lambda d: sum(c["loops"] for c in d["clients"])  # noqa: E731
    assert virt(high) / virt(base) == pytest.approx(69_400 / 49_800, rel=0.03)
    lat = lambda d: {n: a["latency_ms"] for n, a in d["links"]["nodes"].items() if not n.startswith(("web", "bulk", "perf"))}  # noqa: E731
    assert lat(base) == lat(noloss) == lat(high) and len(lat(base)) == len(base["relays"])
    assert base["links"]["classes"] == noloss["links"]["classes"] == high["links"]["classes"]
    assert (base["links"]["preset"], noloss["links"]["preset"]) == ("paper", "none")
    highloss = sample.sample(population.BUNDLED, SampleSpec(condition="high-loss", **spec))  # type: ignore[arg-type]
    assert highloss["links"]["preset"] == "paper-high-loss"
    net = parse_scenario(base)   # every path of the network gets the model
    assert net.links is not None and net.links.congestion == "cubic"
    assert not any("shaping" in r for r in base["relays"] + base["clients"])


def test_paper_mix_and_roles() -> None:
    data = sample.sample(population.BUNDLED, SampleSpec(seed=1, network_scale=0.01, loops_per_process=50))
    net = parse_scenario(data)
    virtual = {p: sum(c.loops for c in net.clients if c.profile is p) for p in Profile}
    total = sum(virtual.values())
    assert total == pytest.approx(498, abs=2)
    assert virtual[Profile.PERF] == 3 and virtual[Profile.BULK] == 15    # 300 and 1495 of 49,800
    assert all(c.loops <= 50 for c in net.clients)
    counts = {r: len(net.by_role(r)) for r in (Role.GUARD, Role.MIDDLE, Role.EXIT)}
    assert counts == {Role.GUARD: 24, Role.MIDDLE: 42, Role.EXIT: 9}
    under_test = [n for n in net.relays if n.binary.value == "patched"]
    assert len(under_test) == 2 and all(n.role is Role.MIDDLE and n.kist_run_interval_ms == 10 for n in under_test)
    # the relays under test are the fastest middles
    middles = sorted((n.bandwidth_rate_kib or 0 for n in net.by_role(Role.MIDDLE)), reverse=True)
    assert sorted((n.bandwidth_rate_kib or 0 for n in under_test), reverse=True) == middles[:2]
    assert sum(n.bandwidth_rate_kib or 0 for n in net.relays) <= 40_960 + 75 * len(net.relays)


def test_bundled_draws_follow_its_quantiles() -> None:
    rng = random.Random(0)
    draws = sorted(population.BUNDLED.draw_bandwidth(Role.MIDDLE, rng) for _ in range(20_000))
    assert draws[10_000] == pytest.approx(500.0, rel=0.05)     # the median it was given
    assert draws[2000] == pytest.approx(60.0, rel=0.08)        # P10
    assert draws[0] >= 20.0 and draws[-1] <= 60_000.0


def test_consensus_roles_follow_tornettools_rule() -> None:
    pop = population.from_consensus(CONSENSUS)
    # exitA has Exit+Guard -> exit; badexit -> middle; "down" is not Running -> left out
    assert pop.counts == {Role.GUARD: 2, Role.MIDDLE: 4, Role.EXIT: 2}
    assert pop.bandwidths[Role.EXIT] == (2000.0, 8000.0)
    data = sample.sample(pop, SampleSpec(seed=1, network_scale=1.0, under_test=1))
    assert {r["bandwidth_rate_kib"] for r in data["relays"] if r["role"] == "exit"} <= {2000, 8000}


def test_bad_consensus_and_bad_arguments_say_what(tmp_path: Path) -> None:
    bad = tmp_path / "c"
    bad.write_text("network-status-version 3\nvalid-after yesterday\n")
    with pytest.raises(InputError, match="could not parse"):
        population.from_consensus(bad)
    with pytest.raises(InputError, match="no such file"):
        population.from_consensus(tmp_path / "missing")
    with pytest.raises(InputError, match="--network-scale"):
        sample.sample(population.BUNDLED, SampleSpec(seed=1, network_scale=2))
    with pytest.raises(InputError, match="--condition"):
        sample.sample(population.BUNDLED, SampleSpec(seed=1, condition="rainy"))


def test_generate_command_writes_a_loadable_file_and_never_overwrites_others(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "net.toml"
    assert cli.main(["generate", str(out), "--seed", "5", "--links", "paper"]) == 0
    net = load_scenario(out)
    assert net.name == "sampled-s5-base" and len(net.clients) >= 3
    assert "virtual clients" in capsys.readouterr().out
    first = out.read_text()
    assert cli.main(["generate", str(out), "--seed", "5", "--links", "paper"]) == 0   # ours: rewritten
    assert out.read_text() == first
    mine = tmp_path / "mine.toml"
    mine.write_text("# my own scenario\n")
    assert cli.main(["generate", str(mine)]) == 2
    assert mine.read_text() == "# my own scenario\n"
    assert "not overwriting" in capsys.readouterr().err
    assert cli.main(["generate", str(tmp_path / "x.toml"), "--consensus", str(tmp_path / "none")]) == 2
    assert not (tmp_path / "x.toml").exists()


def test_client_loops_field_is_checked() -> None:
    data = sample.sample(population.BUNDLED, SampleSpec(seed=1))
    data["clients"][0]["loops"] = 0
    with pytest.raises(InputError, match=r"clients\[0\].*loops must be 1\.\.200"):
        parse_scenario(data, "x.toml")
