"""Sample a scenario (the harness' network description) from a relay population, seeded.

Scaled to this machine the way tornettools scales the public network: ``network_scale`` is
the fraction of the population's relays (and of the paper's 49,800 clients) to sample;
``load_scale`` multiplies the clients only. Relay bandwidths are drawn from the population
and then multiplied by one factor so their sum fits ``capacity_kib`` (a loopback machine with
two cores cannot carry the public network's rates; keeping the ratios keeps path selection's
shape), floored at tor's minimum relay rate.

Clients follow the paper's mix (sec. 4.1): of 49,800 clients, 300 perf (50 KiB / 1 MiB /
5 MiB, 60-120 s pauses), 1,495 bulk (5 MiB, no pause) and 48,005 web (320 KiB, 1-60 s
pauses). Like tornettools' ``process_scale``, many of these virtual clients share one tor
client process: each process runs ``loops`` download loops of one profile at once.

The same seed samples the same relays under every condition (conditions change only the
client count and the link model's loss), so KIST - Vanilla differences can be paired by
network across conditions too.

Links come from a ``LinkModel``: the sampler asks it for each node's access latency and
writes the scenario's ``[links]`` table (harness.network.links: the delay line on every
path); ``NoLinks`` adds nothing; ``PaperLinks`` is the paper's model (loss = latency /
300 ms x 1.5 %, latency capped at 300 ms).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from harness.config import MIN_RELAY_RATE_KIB, Role, parse_scenario
from harness.errors import InputError
from harness.experiments.population import Population

PAPER_CLIENTS = 49_800
PAPER_MIX = (("perf", 300), ("bulk", 1495), ("web", 48_005))
PAPER_SERVERS = 5000
PAPER_RUN_INTERVAL_MS = 10   # sec. 4.2: "configured to run every 10 milliseconds"
MAX_LOOPS = 200


@dataclass(frozen=True)
class Condition:
    """One of the paper's five conditions (sec. 4.2): a client multiplier and a loss multiplier."""

    name: str
    load: float = 1.0
    loss: float = 1.0


# low/high load: 19,600 of 49,800 clients removed / added; no loss: 0; high loss: x2 (max 3 %).
CONDITIONS: Mapping[str, Condition] = {c.name: c for c in (
    Condition("base"),
    Condition("low-load", load=(PAPER_CLIENTS - 19_600) / PAPER_CLIENTS),
    Condition("high-load", load=(PAPER_CLIENTS + 19_600) / PAPER_CLIENTS),
    Condition("no-loss", loss=0.0),
    Condition("high-loss", loss=2.0),
)}
MAX_LOSS_PERCENT = 3.0


class LinkModel(Protocol):
    """Gives the network's links: each node's access latency, then the scenario's ``[links]`` table."""

    @property
    def name(self) -> str: ...

    def access(self, node: str, role: Role, rng: random.Random) -> dict[str, Any]: ...

    def table(self, access: Mapping[str, Mapping[str, Any]], rng: random.Random,
              loss_factor: float) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class NoLinks:
    name: str = "none"

    def access(self, node: str, role: Role, rng: random.Random) -> dict[str, Any]:
        return {}

    def table(self, access: Mapping[str, Mapping[str, Any]], rng: random.Random,
              loss_factor: float) -> dict[str, Any] | None:
        return None


@dataclass(frozen=True)
class PaperLinks:
    """Per-node access latency uniform in [min_ms, max_ms]; loss = path latency / 300 x 1.5 %.

    A path's latency is the sum of its two nodes' access latencies (harness.network.links), so
    each node gets half of a one-way edge in the paper's graph (edges capped at 300 ms), and
    the ``paper`` preset gives every path the paper's loss for its latency (``paper-high-loss``
    doubles it, to at most 3 %; the no-loss condition has none). Every path goes through the
    delay line — relay to relay, authorities and the file server included — with CUBIC in
    every node's namespace where the backend can set it. ``optional``: a host that cannot
    run the delay line runs without links and records so."""

    min_ms: float = 5.0
    max_ms: float = 75.0
    optional: bool = True
    name: str = "paper"

    def access(self, node: str, role: Role, rng: random.Random) -> dict[str, Any]:
        return {"latency_ms": round(rng.uniform(self.min_ms, self.max_ms), 1)}

    def table(self, access: Mapping[str, Mapping[str, Any]], rng: random.Random,
              loss_factor: float) -> dict[str, Any] | None:
        preset = "none" if loss_factor <= 0 else "paper" if loss_factor <= 1 else "paper-high-loss"
        return {"preset": preset, "congestion": "cubic", "optional": True if self.optional else ["congestion"],
                # one access latency for each class the sampler does not draw per node
                "classes": {"authority": self.access("authority", Role.AUTHORITY, rng),
                            "server": self.access("server", Role.CLIENT, rng)},
                "nodes": {name: dict(a) for name, a in access.items()}}


LINK_MODELS: Mapping[str, LinkModel] = {"none": NoLinks(), "paper": PaperLinks()}


@dataclass(frozen=True)
class SampleSpec:
    """Everything a sampled network depends on; the same spec gives the same scenario."""

    seed: int
    network_scale: float = 0.002          # of the population's relays and the paper's clients
    load_scale: float = 1.0
    condition: str = "base"
    capacity_kib: float = 40_960.0        # sum of relay BandwidthRate after scaling
    loops_per_process: int = 25           # virtual clients per tor client process
    under_test: int = 2                   # middles that run the patched tor (KIST/Vanilla arms)
    under_test_binary: str = "patched"
    duration_s: float = 120.0
    pause_scale: float = 1.0
    servers: int = 2
    links: str = "none"
    extra: Mapping[str, Any] = field(default_factory=dict)


def _check(spec: SampleSpec) -> None:
    if not 0 < spec.network_scale <= 1:
        raise InputError(f"--network-scale must be > 0 and <= 1 (a fraction of the population), got "
                         f"{spec.network_scale:g}")
    if not 0 < spec.load_scale <= 16:
        raise InputError(f"--load-scale must be > 0 and <= 16, got {spec.load_scale:g}")
    if spec.condition not in CONDITIONS:
        raise InputError(f"--condition {spec.condition!r} is not one of {', '.join(CONDITIONS)}")
    if spec.links not in LINK_MODELS:
        raise InputError(f"--links {spec.links!r} is not one of {', '.join(LINK_MODELS)}")
    if not 1 <= spec.loops_per_process <= MAX_LOOPS:
        raise InputError(f"--loops-per-process must be 1..{MAX_LOOPS}, got {spec.loops_per_process}")
    if spec.under_test < 0 or spec.servers < 1 or spec.capacity_kib < MIN_RELAY_RATE_KIB:
        raise InputError("--under-test must be >= 0, --servers >= 1, --capacity-kib >= "
                         f"{MIN_RELAY_RATE_KIB}")


def _split(total: int, per: int) -> list[int]:
    """total virtual clients into processes of at most per loops, as even as possible."""
    if total <= 0:
        return []
    n = math.ceil(total / per)
    return [total // n + (1 if i < total % n else 0) for i in range(n)]


def sample(pop: Population, spec: SampleSpec) -> dict[str, Any]:
    """A scenario as a TOML-ready dict (validated by harness.config before it is returned)."""
    _check(spec)
    cond = CONDITIONS[spec.condition]
    rng = random.Random(spec.seed)             # relays: the same under every condition
    link_rng = random.Random(spec.seed + 1)    # links: the same latencies under every condition
    # floors: a guard never is its own first hop and an exit never its own exit, so a small
    # sample still needs several of each (3 guards: with 2, a guard bootstraps late or never)
    floors = {Role.GUARD: 3, Role.EXIT: 2, Role.MIDDLE: spec.under_test + 1}
    counts = {r: max(floors[r], round(n * spec.network_scale)) for r, n in pop.counts.items()}
    drawn = {r: sorted((pop.draw_bandwidth(r, rng) for _ in range(n)), reverse=True) for r, n in counts.items()}
    total = sum(sum(v) for v in drawn.values())
    factor = min(1.0, spec.capacity_kib / total)
    links = LINK_MODELS[spec.links]
    access: dict[str, dict[str, Any]] = {}   # node -> its access link, for the [links] table
    relays: list[dict[str, Any]] = []
    for role, prefix in ((Role.GUARD, "guard"), (Role.MIDDLE, "middle"), (Role.EXIT, "exit")):
        for i, bw in enumerate(drawn[role]):
            rate = max(MIN_RELAY_RATE_KIB, int(bw * factor))
            name = f"{prefix}{i}"
            grp: dict[str, Any] = {"name": name, "role": role.value, "binary": "stock",
                                   "bandwidth_rate_kib": rate, "bandwidth_burst_kib": 2 * rate}
            if role is Role.MIDDLE and i < spec.under_test:
                # the fastest middles carry the most circuits: they are the relays under test
                grp.update(name=f"test{i}", binary=spec.under_test_binary, scheduler="KIST",
                           kist_sched_run_interval_ms=PAPER_RUN_INTERVAL_MS)
            if a := links.access(grp["name"], role, link_rng):
                access[grp["name"]] = a
            relays.append(grp)
    n_clients = max(len(PAPER_MIX), round(PAPER_CLIENTS * spec.network_scale * spec.load_scale * cond.load))
    clients: list[dict[str, Any]] = []
    for profile, share in PAPER_MIX:
        virtual = max(1, round(n_clients * share / PAPER_CLIENTS))
        for j, loops in enumerate(_split(virtual, spec.loops_per_process)):
            name = f"{profile}{j}"
            grp = {"name": name, "profile": profile, "loops": loops}
            if a := links.access(name, Role.CLIENT, link_rng):
                access[name] = a
            clients.append(grp)
    data: dict[str, Any] = {
        "network": {"name": f"sampled-s{spec.seed}-{spec.condition}", "bootstrap_timeout_s": 120},
        # authorities get the Guard flag too (as in the shipped scenarios): more first hops
        "authorities": {"count": 3, "binary": "stock", "vote_guard": True},
        "relays": relays,
        "clients": clients,
        "fileservers": [{"name": "server", "count": spec.servers}],
        # the paper's clients download each file on a new circuit (sec. 4.1): tens to hundreds
        # of circuits cross the relays under test instead of one per client process
        "traffic": {"duration_s": spec.duration_s, "pause_scale": spec.pause_scale, "circuit_per_download": True},
    }
    # its own stream: the authorities' and the server's latency do not move with the client count
    if (table := links.table(access, random.Random(spec.seed + 2), cond.loss)) is not None:
        data["links"] = table
    parse_scenario(data, f"<sampled seed {spec.seed}>")   # a sampler bug is caught before disk
    return data


def header(pop: Population, spec: SampleSpec) -> str:
    """The comment block on top of a generated file: what made it, so it can be made again."""
    return "\n".join([
        f"{GENERATED_MARK} from population {pop.name!r}",
        f"# provenance: {pop.provenance}",
        f"# seed {spec.seed}, network_scale {spec.network_scale:g}, load_scale {spec.load_scale:g}, "
        f"condition {spec.condition}, links {spec.links}, capacity {spec.capacity_kib:g} KiB/s, "
        f"{spec.loops_per_process} loops per client process",
        "",
    ])


GENERATED_MARK = "# generated by kist-harness generate"


def to_toml(data: Mapping[str, Any]) -> str:
    """The scenario dict as TOML (tables, arrays of tables, scalars: all a scenario has)."""
    out: list[str] = []

    def val(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(val(x) for x in v) + "]"
        if isinstance(v, Mapping):
            return "{ " + ", ".join(f"{k} = {val(x)}" for k, x in v.items()) + " }"
        raise TypeError(f"cannot write {type(v).__name__} as TOML")

    for key, section in data.items():
        if isinstance(section, list):
            for grp in section:
                out.append(f"[[{key}]]")
                out += [f"{k} = {val(v)}" for k, v in grp.items()]
                out.append("")
        else:
            out.append(f"[{key}]")
            out += [f"{k} = {val(v)}" for k, v in section.items()]
            out.append("")
    return "\n".join(out)
