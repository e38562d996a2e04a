"""Scenario TOML -> a frozen, validated network description (no side effects).

Describe, then build: this module only reads and checks the scenario; the backends in
``harness.network`` turn the description into running tor processes. Every check names
the file, the table and the field, so a bad scenario is fixed without reading code.
"""

from __future__ import annotations

import enum
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import InputError

if TYPE_CHECKING:
    from harness.network.links import LinkModel

MIN_AUTHORITIES = 3
# tor refuses a relay whose BandwidthRate is below 75 KiB/s (options_validate: "at least 76800").
MIN_RELAY_RATE_KIB = 75
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,14}$")  # tor nicknames: 1-19 alnum; leave room for an index


class Role(enum.Enum):
    """What a node is for; set in the scenario, never guessed from its name."""

    AUTHORITY = "authority"
    GUARD = "guard"
    MIDDLE = "middle"
    EXIT = "exit"
    CLIENT = "client"

    @property
    def is_relay(self) -> bool:
        return self in (Role.AUTHORITY, Role.GUARD, Role.MIDDLE, Role.EXIT)


class Scheduler(enum.Enum):
    """Tor's socket schedulers; the value is the spelling of the `Schedulers` torrc option."""

    KIST = "KIST"
    KISTLITE = "KISTLite"
    VANILLA = "Vanilla"


class Binary(enum.Enum):
    """Which tor a node runs: the patched build (events for replay) or Debian's stock tor."""

    PATCHED = "patched"
    STOCK = "stock"


class Profile(enum.Enum):
    """Client traffic profiles (the paper's web/bulk/perf clients)."""

    NONE = "none"
    WEB = "web"
    BULK = "bulk"
    PERF = "perf"


@dataclass(frozen=True)
class Shaping:
    """Per-node link shaping on the node's egress; None means not requested."""

    rate_mbit: float | None = None      # tbf/htb rate
    loss_percent: float | None = None   # iptables statistic random drop
    latency_ms: float | None = None     # netem delay
    optional: bool = False              # True: run without what the kernel cannot do (recorded)

    @property
    def requested(self) -> bool:
        return any(v is not None for v in (self.rate_mbit, self.loss_percent, self.latency_ms))


@dataclass(frozen=True)
class Node:
    """One tor process (or a file server) of the description."""

    name: str
    role: Role
    scheduler: Scheduler = Scheduler.KIST
    kist_run_interval_ms: int | None = None       # None: tor's default (from the consensus)
    kist_sock_buf_size_factor: float | None = None
    binary: Binary = Binary.STOCK
    bandwidth_rate_kib: int | None = None
    bandwidth_burst_kib: int | None = None
    vote_guard: bool = False                       # authorities vote the Guard flag for it
    profile: Profile = Profile.NONE                # clients only
    shaping: Shaping = field(default_factory=Shaping)
    # clients only: pin circuits through named relays (EntryNodes/MiddleNodes/ExitNodes), so
    # an arm's traffic really crosses the relay under test; empty = tor chooses.
    entry_nodes: tuple[str, ...] = ()
    middle_nodes: tuple[str, ...] = ()
    exit_nodes: tuple[str, ...] = ()
    # clients only: download loops of the profile run at once through this one tor (many
    # virtual clients per process, like tornettools' process_scale)
    loops: int = 1
    # relays only: ConstrainedSockets with this ConstrainedSockSize (KiB): SO_SNDBUF/SO_RCVBUF
    # of every OR connection fixed small instead of autotuned (a send-buffer-bound KIST variant,
    # docs/byo-scheduler.md, needs it to bind on loopback, where autotuning reaches megabytes)
    constrained_sock_kib: int | None = None
    # --backend swarm: Swarm placement constraints ("node.labels.zone==a"); ignored elsewhere
    placement: tuple[str, ...] = ()


@dataclass(frozen=True)
class FileServer:
    """An HTTP server inside the network that clients download from through Tor."""

    name: str
    shaping: Shaping = field(default_factory=Shaping)
    placement: tuple[str, ...] = ()                # --backend swarm only, as for Node


@dataclass(frozen=True)
class Traffic:
    """How the paper's profiles are scaled to this machine."""

    duration_s: float = 60.0
    pause_scale: float = 1.0   # multiplies every think-time pause
    size_scale: float = 1.0    # multiplies every download size
    max_downloads: int = 0     # per client; 0 = no limit within duration_s
    circuit_per_download: bool = False  # each download on a new circuit (SOCKS isolation), as the paper's


BASE_VARIANT = "base"
MAX_LOAD_SCALE = 16.0
_VARIANT_RE = re.compile(r"^[a-z][a-z0-9_-]{0,15}$")


@dataclass(frozen=True)
class Variant:
    """One load or loss condition the run repeats the KIST/Vanilla comparison under.

    The run executes the base condition first, then each variant back to back on the
    same network, each with its own traffic phase and both arms interleaved inside it.
    """

    name: str
    load_scale: float = 1.0          # offered load per client: ceil(x) parallel loops, pauses x ceil(x)/x
    client_shaping: Shaping = field(default_factory=Shaping)  # on every client's link, on top of the base
    duration_s: float | None = None  # this phase's traffic time; None: the run's

    def describe(self) -> str:
        """What the variant changes, for screens and reports ("load x2, loss 1% on client links")."""
        parts = [f"load x{self.load_scale:g}"] if self.load_scale != 1.0 else []
        s = self.client_shaping
        for value, fmt in ((s.loss_percent, "loss {:g}%"), (s.rate_mbit, "rate {:g} Mbit/s"),
                           (s.latency_ms, "latency {:g} ms")):
            if value is not None:
                parts.append(fmt.format(value))
        text = ", ".join(parts) if parts else "the scenario as written"
        return text + (" on client links" if s.requested else "")


@dataclass(frozen=True)
class Network:
    """A whole private Tor network: validated once, then handed to a backend."""

    name: str
    source: str
    nodes: tuple[Node, ...]
    fileservers: tuple[FileServer, ...]
    traffic: Traffic = field(default_factory=Traffic)
    bootstrap_timeout_s: float = 60.0
    variants: tuple[Variant, ...] = ()   # besides the base condition, which always runs first
    links: LinkModel | None = None       # [links]: latency/jitter/loss/rate on every path (harness.network.links)
    # [network] consensus_params: what the authorities vote (ConsensusParams), e.g. orconn_high
    consensus_params: tuple[tuple[str, int], ...] = ()
    # [network] vote_stable: the authorities vote Stable for every relay from the first consensus
    # (else the median uptime decides, voteflags.c:81-104, and about half the relays get it).
    # Conflux legs need Stable on every hop (CIRCLAUNCH_NEED_UPTIME, conflux_pool.c:1137).
    vote_stable: bool = False

    def by_role(self, *roles: Role) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.role in roles)

    @property
    def authorities(self) -> tuple[Node, ...]:
        return self.by_role(Role.AUTHORITY)

    @property
    def relays(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.role.is_relay)

    @property
    def clients(self) -> tuple[Node, ...]:
        return self.by_role(Role.CLIENT)

    def binaries(self) -> frozenset[Binary]:
        return frozenset(n.binary for n in self.nodes)


# ---------------------------------------------------------------- loading


class _Ctx:
    """Where in the file a value came from, for error messages."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, msg: str) -> InputError:
        return InputError(f"scenario {self.source}, [{where}]: {msg}")


def scenario_path(name_or_path: str | Path) -> Path:
    """A path as given, or the name of a scenario shipped in harness/scenarios/."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        if not p.is_file():
            raise InputError(f"scenario file {p} does not exist")
        return p
    shipped = resources.files("harness") / "scenarios" / f"{name_or_path}.toml"
    if not shipped.is_file():
        names = sorted(x.name.removesuffix(".toml") for x in (resources.files("harness") / "scenarios").iterdir()
                       if x.name.endswith(".toml"))
        raise InputError(f"no scenario named {name_or_path!r}: give a .toml path or one of {', '.join(names)}")
    return Path(str(shipped))


def load_scenario(name_or_path: str | Path) -> Network:
    """Read and validate a scenario file (a path or a shipped scenario's name)."""
    path = scenario_path(name_or_path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"scenario {path}: not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"scenario {path}: not UTF-8 text (byte {exc.start}: {exc.reason}); "
                         "a scenario is a TOML file, see harness/scenarios/default.toml") from None
    except OSError as exc:
        raise InputError(f"scenario {path}: cannot read it ({exc.strerror})") from None
    return parse_scenario(data, str(path))


def parse_scenario(data: Mapping[str, Any], source: str = "<scenario>") -> Network:
    """Turn parsed TOML into a Network; raise InputError naming file, table and field."""
    ctx = _Ctx(source)
    _only(ctx, "top level", data, {"network", "authorities", "relays", "clients", "fileservers", "traffic",
                                   "variants", "links"})
    net = _table(ctx, "network", data.get("network", {}))
    _only(ctx, "network", net, {"name", "bootstrap_timeout_s", "consensus_params", "vote_stable"})
    name = _get(ctx, "network", net, "name", str, Path(source).stem)
    timeout = float(_get(ctx, "network", net, "bootstrap_timeout_s", (int, float), 60.0))
    if timeout <= 0:
        raise ctx.fail("network", f"bootstrap_timeout_s must be > 0, got {timeout}")

    nodes: list[Node] = []
    auth = _table(ctx, "authorities", data.get("authorities", {}))
    nodes += _group(ctx, "authorities", auth, Role.AUTHORITY, default_name="auth")
    for i, grp in enumerate(_array(ctx, "relays", data.get("relays", []))):
        where = f"relays[{i}]"
        role_s = _get(ctx, where, grp, "role", str, None)
        if role_s is None:
            raise ctx.fail(where, "field 'role' is missing: set role = \"guard\", \"middle\" or \"exit\"")
        role = _enum(ctx, where, "role", Role, role_s)
        if role not in (Role.GUARD, Role.MIDDLE, Role.EXIT):
            raise ctx.fail(where, f"role = {role_s!r}: relays are \"guard\", \"middle\" or \"exit\" "
                                  "(authorities go in [authorities], clients in [[clients]])")
        nodes += _group(ctx, where, grp, role, default_name=role.value)
    for i, grp in enumerate(_array(ctx, "clients", data.get("clients", []))):
        nodes += _group(ctx, f"clients[{i}]", grp, Role.CLIENT, default_name="client")
    servers: list[FileServer] = []
    for i, grp in enumerate(_array(ctx, "fileservers", data.get("fileservers", []))):
        where = f"fileservers[{i}]"
        _only(ctx, where, grp, {"name", "count", "shaping", "placement"})
        base = _get(ctx, where, grp, "name", str, "server")
        count = _count(ctx, where, grp)
        shaping = _shaping(ctx, where, grp.get("shaping", {}))
        place = _placement(ctx, where, grp)
        servers += [FileServer(_indexed(ctx, where, base, j, count), shaping, place) for j in range(count)]
    traffic = _traffic(ctx, _table(ctx, "traffic", data.get("traffic", {})))
    variants = _variants(ctx, _array(ctx, "variants", data.get("variants", [])))

    from harness.network.links import parse_links  # here: harness.network imports this module
    links = parse_links(data.get("links"), source, [n.name for n in nodes] + [s.name for s in servers])
    params = _consensus_params(ctx, net.get("consensus_params", {}))
    vote_stable = _get(ctx, "network", net, "vote_stable", bool, False)
    network = Network(name, source, tuple(nodes), tuple(servers), traffic, timeout, variants, links, params,
                      vote_stable)
    _check_network(ctx, network)
    return network


_PARAM_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")


def _consensus_params(ctx: _Ctx, value: Any) -> tuple[tuple[str, int], ...]:
    """``consensus_params = { orconn_high = 1028 }``: names and int32 values, as Tor's
    ConsensusParams takes them (dirvote.c rejects anything else when it votes)."""
    table = _table(ctx, "network.consensus_params", value)
    out = []
    for key, v in table.items():
        if not _PARAM_NAME.match(key):
            raise ctx.fail("network", f"consensus_params: {key!r} is not a consensus parameter name "
                                      "(letters, digits and _; e.g. orconn_high)")
        if isinstance(v, bool) or not isinstance(v, int) or not -2**31 <= v < 2**31:
            raise ctx.fail("network", f"consensus_params.{key} = {v!r}: a consensus parameter is a 32-bit "
                                      "integer")
        out.append((key, v))
    return tuple(sorted(out))


def _check_network(ctx: _Ctx, net: Network) -> None:
    names = [n.name for n in net.nodes] + [s.name for s in net.fileservers]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise ctx.fail("top level", f"node names must be unique; repeated: {', '.join(dups)}")
    if len(net.authorities) < MIN_AUTHORITIES:
        raise ctx.fail("authorities", f"count must be at least {MIN_AUTHORITIES} (a v3 consensus needs a "
                                      f"majority of several authorities), got {len(net.authorities)}")
    if len(net.by_role(Role.EXIT)) < 2:
        raise ctx.fail("relays", f"the network has {len(net.by_role(Role.EXIT))} exit(s); it needs at least 2 "
                                 "relays with role = \"exit\" (an exit never uses itself as its own exit, so a "
                                 "lone exit cannot build exit circuits and bootstraps late or never)")
    guards = [n.name for n in net.relays if n.vote_guard]
    if len(guards) < 2:
        raise ctx.fail("relays", f"{len(guards)} relay(s) get the Guard flag ({', '.join(guards) or 'none'}); "
                                 "at least 2 are needed (a guard never uses itself as its first hop, so "
                                 "a lone guard never bootstraps): set role = \"guard\" on a group or "
                                 "vote_guard = true on more relays or on the authorities")
    if len(net.relays) < 3:
        raise ctx.fail("relays", f"a circuit needs 3 distinct relays; the network has {len(net.relays)}")
    relays = {n.name: n for n in net.relays}
    for c in net.clients:
        for key, ok, what in (("entry_nodes", lambda r: r.vote_guard, "a relay with the Guard flag"),
                              ("middle_nodes", lambda r: True, "a relay"),
                              ("exit_nodes", lambda r: r.role is Role.EXIT, "an exit")):
            for name in getattr(c, key):
                if name not in relays or not ok(relays[name]):
                    raise ctx.fail(f"clients (node {c.name})", f"{key} names {name!r}, which is not {what} "
                                                               "of this network")
    if any(c.profile is not Profile.NONE for c in net.clients) and not net.fileservers:
        raise ctx.fail("fileservers", "clients have traffic profiles but there is no [[fileservers]] to fetch from")


_RELAY_FIELDS = {"name", "count", "role", "scheduler", "kist_sched_run_interval_ms", "kist_sock_buf_size_factor",
                 "binary", "bandwidth_rate_kib", "bandwidth_burst_kib", "vote_guard", "shaping",
                 "constrained_sock_kib", "placement"}
_CLIENT_FIELDS = {"name", "count", "binary", "profile", "shaping", "entry_nodes", "middle_nodes", "exit_nodes",
                  "loops", "placement"}
# A Swarm placement constraint as `docker service create --constraint` takes it.
_CONSTRAINT = re.compile(r"(node\.(id|hostname|role|platform\.os|platform\.arch|labels\.[A-Za-z0-9_.-]+)"
                         r"|engine\.labels\.[A-Za-z0-9_.-]+)\s*(==|!=)\s*[^\s=!]+")
MAX_CLIENT_LOOPS = 200


def _group(ctx: _Ctx, where: str, grp: Mapping[str, Any], role: Role, default_name: str) -> list[Node]:
    allowed = _CLIENT_FIELDS if role is Role.CLIENT else _RELAY_FIELDS - ({"role"} if role is Role.AUTHORITY else set())
    _only(ctx, where, grp, allowed)
    base = _get(ctx, where, grp, "name", str, default_name)
    count = _count(ctx, where, grp, default=MIN_AUTHORITIES if role is Role.AUTHORITY else 1)
    binary = _enum(ctx, where, "binary", Binary, _get(ctx, where, grp, "binary", str, "stock"))
    shaping = _shaping(ctx, where, grp.get("shaping", {}))
    place = _placement(ctx, where, grp)
    if role is Role.CLIENT:
        profile = _enum(ctx, where, "profile", Profile, _get(ctx, where, grp, "profile", str, "none"))
        entry, middle, exit_ = (tuple(_names(ctx, where, grp, k)) for k in ("entry_nodes", "middle_nodes", "exit_nodes"))
        loops = _get(ctx, where, grp, "loops", int, 1)
        if not 1 <= loops <= MAX_CLIENT_LOOPS:
            raise ctx.fail(where, f"loops must be 1..{MAX_CLIENT_LOOPS} (download loops at once in this client), "
                                  f"got {loops}")
        return [Node(_indexed(ctx, where, base, i, count), role, binary=binary, profile=profile, shaping=shaping,
                     entry_nodes=entry, middle_nodes=middle, exit_nodes=exit_, loops=loops, placement=place)
                for i in range(count)]
    sched = _enum(ctx, where, "scheduler", Scheduler, _get(ctx, where, grp, "scheduler", str, "KIST"))
    interval = _get(ctx, where, grp, "kist_sched_run_interval_ms", int, None)
    if interval is not None and not 1 <= interval <= 100:
        raise ctx.fail(where, f"kist_sched_run_interval_ms must be 1..100 (tor's range), got {interval}")
    factor = _get(ctx, where, grp, "kist_sock_buf_size_factor", (int, float), None)
    if factor is not None and not 0 <= factor <= 1000:
        raise ctx.fail(where, f"kist_sock_buf_size_factor must be 0..1000, got {factor}")
    if sched is Scheduler.VANILLA and (interval is not None or factor is not None):
        raise ctx.fail(where, "kist_* fields have no effect with scheduler = \"Vanilla\": remove them")
    rate = _get(ctx, where, grp, "bandwidth_rate_kib", int, None)
    burst = _get(ctx, where, grp, "bandwidth_burst_kib", int, None)
    if rate is not None and rate < MIN_RELAY_RATE_KIB:
        raise ctx.fail(where, f"bandwidth_rate_kib must be at least {MIN_RELAY_RATE_KIB} (tor refuses less "
                              f"for a relay), got {rate}")
    if burst is not None and (rate is None or burst < rate):
        raise ctx.fail(where, "bandwidth_burst_kib needs bandwidth_rate_kib and must be >= it")
    vote_guard = _get(ctx, where, grp, "vote_guard", bool, role is Role.GUARD)
    constrained = _get(ctx, where, grp, "constrained_sock_kib", int, None)
    if constrained is not None and not 2 <= constrained <= 256:
        raise ctx.fail(where, f"constrained_sock_kib must be 2..256 (tor's ConstrainedSockSize range, 2048 to "
                              f"262144 bytes), got {constrained}")
    return [Node(_indexed(ctx, where, base, i, count), role, sched, interval,
                 None if factor is None else float(factor), binary, rate, burst, vote_guard,
                 Profile.NONE, shaping, constrained_sock_kib=constrained, placement=place) for i in range(count)]


def _placement(ctx: _Ctx, where: str, grp: Mapping[str, Any]) -> tuple[str, ...]:
    """Swarm constraints, checked for form here; whether a node of the swarm matches is checked
    by the Swarm backend before it starts anything."""
    val = _get(ctx, where, grp, "placement", list, [])
    for c in val:
        if not isinstance(c, str) or not _CONSTRAINT.fullmatch(c.strip()):
            raise ctx.fail(where, f"placement entry {c!r} is not a Swarm constraint: write e.g. "
                                  "placement = [\"node.labels.kist==relays\"] or [\"node.role==manager\"] "
                                  "(node.id, node.hostname, node.role, node.platform.os/arch, node.labels.KEY or "
                                  "engine.labels.KEY, then == or !=, then a value)")
    return tuple(c.strip() for c in val)


def _names(ctx: _Ctx, where: str, grp: Mapping[str, Any], key: str) -> list[str]:
    val = _get(ctx, where, grp, key, list, [])
    if not all(isinstance(v, str) for v in val):
        raise ctx.fail(where, f"field {key!r} must be a list of node names, got {val!r}")
    return val


def _shaping(ctx: _Ctx, where: str, raw: Any) -> Shaping:
    where = f"{where}.shaping"
    tbl = _table(ctx, where, raw)
    _only(ctx, where, tbl, {"rate_mbit", "loss_percent", "latency_ms", "optional"})
    return _shaping_fields(ctx, where, tbl)


def _shaping_fields(ctx: _Ctx, where: str, tbl: Mapping[str, Any]) -> Shaping:
    """rate_mbit, loss_percent, latency_ms (and optional) of a table, range-checked."""
    rate = _get(ctx, where, tbl, "rate_mbit", (int, float), None)
    loss = _get(ctx, where, tbl, "loss_percent", (int, float), None)
    lat = _get(ctx, where, tbl, "latency_ms", (int, float), None)
    if rate is not None and not 0.01 <= rate <= 100_000:
        raise ctx.fail(where, f"rate_mbit must be between 0.01 and 100000, got {rate}")
    if loss is not None and not 0 < loss < 100:
        raise ctx.fail(where, f"loss_percent must be > 0 and < 100, got {loss}")
    if lat is not None and not 0 < lat <= 10_000:
        raise ctx.fail(where, f"latency_ms must be > 0 and <= 10000, got {lat}")
    optional = _get(ctx, where, tbl, "optional", bool, False)
    return Shaping(_f(rate), _f(loss), _f(lat), optional)


def _traffic(ctx: _Ctx, tbl: Mapping[str, Any]) -> Traffic:
    _only(ctx, "traffic", tbl, {"duration_s", "pause_scale", "size_scale", "max_downloads", "circuit_per_download"})
    t = Traffic(float(_get(ctx, "traffic", tbl, "duration_s", (int, float), 60.0)),
                float(_get(ctx, "traffic", tbl, "pause_scale", (int, float), 1.0)),
                float(_get(ctx, "traffic", tbl, "size_scale", (int, float), 1.0)),
                _get(ctx, "traffic", tbl, "max_downloads", int, 0),
                _get(ctx, "traffic", tbl, "circuit_per_download", bool, False))
    for fname in ("duration_s", "size_scale"):
        if getattr(t, fname) <= 0:
            raise ctx.fail("traffic", f"{fname} must be > 0, got {getattr(t, fname)}")
    if t.pause_scale < 0 or t.max_downloads < 0:
        raise ctx.fail("traffic", "pause_scale and max_downloads must be >= 0")
    return t


_VARIANT_FIELDS = {"name", "load_scale", "loss_percent", "rate_mbit", "latency_ms", "duration_s"}


def _variants(ctx: _Ctx, groups: list[Mapping[str, Any]]) -> tuple[Variant, ...]:
    out: list[Variant] = []
    for i, tbl in enumerate(groups):
        where = f"variants[{i}]"
        _only(ctx, where, tbl, _VARIANT_FIELDS)
        name = _get(ctx, where, tbl, "name", str, None)
        if name is None:
            raise ctx.fail(where, "field 'name' is missing: name each variant, e.g. name = \"loss1\"")
        if not _VARIANT_RE.match(name) or name == BASE_VARIANT:
            raise ctx.fail(where, f"name = {name!r}: use 1-16 lower-case letters, digits, '-' or '_' starting "
                                  f"with a letter, other than {BASE_VARIANT!r} (the condition every run starts with)")
        if name in {v.name for v in out}:
            raise ctx.fail(where, f"name = {name!r} is used by an earlier variant; variant names must be unique")
        load = float(_get(ctx, where, tbl, "load_scale", (int, float), 1.0))
        if not 0 < load <= MAX_LOAD_SCALE:
            raise ctx.fail(where, f"load_scale must be > 0 and <= {MAX_LOAD_SCALE:g} (a multiple of each "
                                  f"client's offered load), got {load:g}")
        duration = _get(ctx, where, tbl, "duration_s", (int, float), None)
        if duration is not None and duration <= 0:
            raise ctx.fail(where, f"duration_s must be > 0, got {duration}")
        variant = Variant(name, load, _shaping_fields(ctx, where, tbl), _f(duration))
        if load == 1.0 and not variant.client_shaping.requested:
            raise ctx.fail(where, f"variant {name!r} changes nothing: set load_scale (e.g. 2.0) or "
                                  "loss_percent, rate_mbit or latency_ms (applied to every client's link)")
        out.append(variant)
    return tuple(out)


def _f(v: int | float | None) -> float | None:
    return None if v is None else float(v)


def _indexed(ctx: _Ctx, where: str, base: str, i: int, count: int) -> str:
    if not _NAME_RE.match(base):
        raise ctx.fail(where, f"name = {base!r}: use 1-15 letters or digits starting with a letter "
                              "(it becomes part of tor nicknames and container names)")
    return f"{base}{i}" if count > 1 else base


def _count(ctx: _Ctx, where: str, grp: Mapping[str, Any], default: int = 1) -> int:
    count = _get(ctx, where, grp, "count", int, default)
    if not 1 <= count <= 150:
        raise ctx.fail(where, f"count must be 1..150, got {count}")
    return count


def _only(ctx: _Ctx, where: str, tbl: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(tbl) - allowed)
    if unknown:
        raise ctx.fail(where, f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")


def _table(ctx: _Ctx, where: str, raw: Any) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise ctx.fail(where, f"must be a table, got {type(raw).__name__}")
    return raw


def _array(ctx: _Ctx, where: str, raw: Any) -> list[Mapping[str, Any]]:
    if not isinstance(raw, list) or not all(isinstance(x, Mapping) for x in raw):
        raise ctx.fail(where, f"must be an array of tables ([[{where}]]), got {type(raw).__name__}")
    return raw


def _get(ctx: _Ctx, where: str, tbl: Mapping[str, Any], key: str, typ: Any, default: Any) -> Any:
    if key not in tbl:
        return default
    val = tbl[key]
    types = typ if isinstance(typ, tuple) else (typ,)
    # bool is an int in Python: refuse true where a number is meant, and 1 where a bool is.
    if isinstance(val, bool) != (bool in types) or not isinstance(val, types):
        want = " or ".join(t.__name__ for t in types)
        raise ctx.fail(where, f"field {key!r} must be {want}, got {val!r}")
    return val


def _enum(ctx: _Ctx, where: str, key: str, enum_cls: type[enum.Enum], value: str) -> Any:
    for member in enum_cls:
        if member.value.lower() == value.lower():
            return member
    allowed = ", ".join(repr(m.value) for m in enum_cls)
    raise ctx.fail(where, f"field {key!r} = {value!r} is not one of {allowed}")
