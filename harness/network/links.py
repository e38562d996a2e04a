"""Links that behave like the Internet: the description (latency, jitter, loss, rate per link).

Why a model and not per-node shaping alone: KIST's limit and run interval mean little at
loopback round trips of 0.1 ms, and the paper's results come from an Internet model where
every pair of hosts has its own latency and a loss that grows with it. So the scenario's
``[links]`` table describes every path, relay to relay included:

- ``latency_ms``, ``jitter_ms``, ``loss_percent``, ``rate_mbit`` at the top of ``[links]``
  are every node's *access link*; ``[links.classes.ROLE]`` (authority, guard, middle, exit,
  client, relay = every relay, server = file servers) and ``[links.nodes.NAME]`` override
  them field by field, the most specific winning.
- A path A→B crosses A's access link and B's: latencies add, jitters add in quadrature,
  losses compound (1 − (1−a)(1−b)), the smaller rate wins. ``[links.regions]`` puts nodes in
  regions and ``[links.matrix]`` adds a core latency between regions ("eu-us" = 45).
- ``[[links.pairs]]`` (a, b and any of the four fields) replaces what it sets for the
  pair, both directions.
- ``congestion = "cubic"`` sets TCP's congestion control in every node's namespace (the
  paper's era was CUBIC; this machine's default is BBR, which ignores random loss).
- ``preset = "paper"`` is the paper's model (Jansen & Traudt, §4): a path's latency is
  capped at 300 ms and, where no rule sets loss, loss = latency / 300 × 1.5 %;
  ``"paper-high-loss"`` doubles that loss, to at most 3 %.

All figures are one way: the round trip of a path is twice its latency. Nothing here
touches the host; `resolve` gives each directed path's parameters, `hostcaps` and the
backends decide how (and whether) this host can put them in force.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.errors import InputError

PAPER_MAX_LATENCY_MS = 300.0
PAPER_LOSS_AT_MAX = 1.5          # percent at 300 ms
PAPER_HIGH_LOSS_MAX = 3.0        # percent
MAX_LATENCY_MS = 5_000.0
CLASSES = ("authority", "guard", "middle", "exit", "client", "relay", "server")
FIELDS = ("latency_ms", "jitter_ms", "loss_percent", "rate_mbit")


class Preset(enum.Enum):
    NONE = "none"
    PAPER = "paper"
    PAPER_HIGH_LOSS = "paper-high-loss"


class Mechanism(enum.Enum):
    """How links are put in force: chosen from what the host offers ("auto"), or forced."""

    AUTO = "auto"
    NETEM = "netem"
    DELAYLINE = "delayline"   # the NFQUEUE delay line (harness.network.delayline)


@dataclass(frozen=True)
class LinkParams:
    """Some of a link's four figures; None = not set at this level."""

    latency_ms: float | None = None
    jitter_ms: float | None = None
    loss_percent: float | None = None
    rate_mbit: float | None = None

    def over(self, base: LinkParams) -> LinkParams:
        """These fields where set, base's elsewhere."""
        return LinkParams(*(getattr(self, f) if getattr(self, f) is not None else getattr(base, f) for f in FIELDS))

    @property
    def empty(self) -> bool:
        return all(getattr(self, f) is None for f in FIELDS)


@dataclass(frozen=True)
class PathParams:
    """One direction of one path, every figure decided (what the emulator applies)."""

    src: str
    dst: str
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_percent: float = 0.0
    rate_mbit: float | None = None

    @property
    def rtt_ms(self) -> float:
        """The round trip, if the way back is the same (it is, unless a pair rule says otherwise)."""
        return 2 * self.latency_ms

    @property
    def shaped(self) -> bool:
        return bool(self.latency_ms or self.jitter_ms or self.loss_percent or self.rate_mbit)


@dataclass(frozen=True)
class PairRule:
    a: str
    b: str
    params: LinkParams


@dataclass(frozen=True)
class LinkModel:
    """The ``[links]`` table, validated."""

    default: LinkParams = field(default_factory=LinkParams)
    classes: tuple[tuple[str, LinkParams], ...] = ()
    nodes: tuple[tuple[str, LinkParams], ...] = ()
    regions: tuple[tuple[str, str], ...] = ()              # (node, region)
    matrix: tuple[tuple[str, str, float], ...] = ()         # (region, region, one-way ms), symmetric
    pairs: tuple[PairRule, ...] = ()
    preset: Preset = Preset.NONE
    mechanism: Mechanism = Mechanism.AUTO
    optional: bool = False        # True: run without what the host cannot do (recorded as skipped)
    mss: int | None = 1448        # clamp TCP's MSS on shaped links to an Internet path's (None: leave it)
    seed: int = 1
    congestion: str | None = None  # TCP congestion control in every node's namespace (None: the host's)
    congestion_optional: bool = False  # optional = ["congestion"]: only the congestion control may be skipped

    def access(self, name: str, classes: Sequence[str]) -> LinkParams:
        """A node's access link: default < its classes (in the order given) < the node itself."""
        p = self.default
        cls = dict(self.classes)
        for c in classes:
            if c in cls:
                p = cls[c].over(p)
        own = dict(self.nodes).get(name)
        return own.over(p) if own else p

    def core_ms(self, a: str, b: str) -> float:
        reg = dict(self.regions)
        ra, rb = reg.get(a), reg.get(b)
        if ra is None or rb is None:
            return 0.0
        for x, y, ms in self.matrix:
            if {x, y} == {ra, rb} and (x == y) == (ra == rb):
                return ms
        return 0.0

    def resolve(self, src: str, src_classes: Sequence[str], dst: str, dst_classes: Sequence[str]) -> PathParams:
        """The parameters of the path src -> dst."""
        a, b = self.access(src, src_classes), self.access(dst, dst_classes)
        lat = (a.latency_ms or 0.0) + (b.latency_ms or 0.0) + self.core_ms(src, dst)
        jit = math.hypot(a.jitter_ms or 0.0, b.jitter_ms or 0.0)
        losses = [x.loss_percent for x in (a, b) if x.loss_percent is not None]
        loss: float | None = (100 * (1 - math.prod(1 - v / 100 for v in losses))) if losses else None
        rates = [x.rate_mbit for x in (a, b) if x.rate_mbit is not None]
        rate = min(rates) if rates else None
        for rule in self.pairs:
            if {rule.a, rule.b} == {src, dst}:
                p = rule.params
                lat = p.latency_ms if p.latency_ms is not None else lat
                jit = p.jitter_ms if p.jitter_ms is not None else jit
                loss = p.loss_percent if p.loss_percent is not None else loss
                rate = p.rate_mbit if p.rate_mbit is not None else rate
        if self.preset is not Preset.NONE:
            lat = min(lat, PAPER_MAX_LATENCY_MS)
            if loss is None:
                loss = paper_loss(lat, self.preset)
        return PathParams(src, dst, lat, jit, loss or 0.0, rate)

    def requested(self) -> set[str]:
        """Which of the four figures any rule or the preset sets (what the host must be able to do)."""
        out = {f for f in FIELDS for p in self._all_params() if getattr(p, f)}
        if self.preset is not Preset.NONE:
            out.add("loss_percent")
        return out

    def _all_params(self) -> list[LinkParams]:
        return [self.default, *(p for _, p in self.classes), *(p for _, p in self.nodes),
                *(r.params for r in self.pairs)] + ([LinkParams(latency_ms=1.0)] if self.matrix else [])


def paper_loss(latency_ms: float, preset: Preset) -> float:
    """The paper's loss for a path of this latency: latency / 300 × 1.5 %; high loss doubles it (≤ 3 %)."""
    base = min(latency_ms, PAPER_MAX_LATENCY_MS) / PAPER_MAX_LATENCY_MS * PAPER_LOSS_AT_MAX
    if preset is Preset.PAPER_HIGH_LOSS:
        return min(2 * base, PAPER_HIGH_LOSS_MAX)
    return base


# ---------------------------------------------------------------- parsing

_TOP = {"preset", "mechanism", "optional", "mss", "seed", "congestion", "classes", "nodes", "regions", "matrix", "pairs", *FIELDS}


def _fail(source: str, where: str, msg: str) -> InputError:
    return InputError(f"scenario {source}, [{where}]: {msg}")


def _num(source: str, where: str, tbl: Mapping[str, Any], key: str, lo: float, hi: float,
         lo_open: bool = False) -> float | None:
    if key not in tbl:
        return None
    v = tbl[key]
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise _fail(source, where, f"field {key!r} must be a number, got {v!r}")
    if not (lo < v if lo_open else lo <= v) or v > hi:
        raise _fail(source, where, f"field {key!r} must be {'>' if lo_open else '>='} {lo:g} and <= {hi:g}, "
                                   f"got {v!r}")
    return float(v)


def _params(source: str, where: str, tbl: Any, extra: frozenset[str] = frozenset()) -> LinkParams:
    if not isinstance(tbl, Mapping):
        raise _fail(source, where, f"must be a table, got {type(tbl).__name__}")
    unknown = sorted(set(tbl) - set(FIELDS) - set(extra))
    if unknown:
        raise _fail(source, where, f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(FIELDS))}")
    return LinkParams(_num(source, where, tbl, "latency_ms", 0, MAX_LATENCY_MS),
                      _num(source, where, tbl, "jitter_ms", 0, MAX_LATENCY_MS),
                      _num(source, where, tbl, "loss_percent", 0, 100, lo_open=False),
                      _num(source, where, tbl, "rate_mbit", 0.01, 100_000))


def parse_links(raw: Any, source: str, node_names: Sequence[str]) -> LinkModel | None:
    """The ``[links]`` table (None if absent); InputError naming the field for anything wrong."""
    if raw is None:
        return None
    where = "links"
    if not isinstance(raw, Mapping):
        raise _fail(source, where, f"must be a table, got {type(raw).__name__}")
    unknown = sorted(set(raw) - _TOP)
    if unknown:
        raise _fail(source, where, f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_TOP))}")
    default = _params(source, where, {k: v for k, v in raw.items() if k in FIELDS})
    if default.loss_percent is not None and default.loss_percent >= 100:
        raise _fail(source, where, "loss_percent must be < 100")
    names = set(node_names)
    preset = _choice(source, where, raw, "preset", Preset, Preset.NONE)
    mechanism = _choice(source, where, raw, "mechanism", Mechanism, Mechanism.AUTO)
    optional = raw.get("optional", False)
    congestion_optional = optional is True
    if isinstance(optional, list) and all(isinstance(o, str) for o in optional) and set(optional) <= {"congestion"}:
        congestion_optional, optional = bool(optional), False
    elif not isinstance(optional, bool):
        raise _fail(source, where, f"field 'optional' must be true, false or [\"congestion\"] (keep the links, "
                                   f"run with the host's congestion control if the scenario's cannot be set), "
                                   f"got {optional!r}")
    mss = raw.get("mss", 1448)
    if mss is not False and (isinstance(mss, bool) or not isinstance(mss, int) or not 536 <= mss <= 65495):
        raise _fail(source, where, f"field 'mss' must be 536..65495 (TCP's MSS on shaped links) or false "
                                   f"to leave it as the interface has it, got {mss!r}")
    seed = raw.get("seed", 1)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise _fail(source, where, f"field 'seed' must be an integer, got {seed!r}")

    congestion = raw.get("congestion")
    if congestion is not None and (not isinstance(congestion, str) or not congestion.isalnum()):
        raise _fail(source, where, f"field 'congestion' must name a TCP congestion control (e.g. \"cubic\", the "
                                   f"paper's era; \"bbr\"), got {congestion!r}")

    classes = []
    for cls, tbl in _table(source, "links.classes", raw.get("classes", {})).items():
        if cls not in CLASSES:
            raise _fail(source, "links.classes", f"unknown class {cls!r}; classes: {', '.join(CLASSES)}")
        classes.append((cls, _params(source, f"links.classes.{cls}", tbl)))
    nodes = []
    for name, tbl in _table(source, "links.nodes", raw.get("nodes", {})).items():
        if name not in names:
            raise _fail(source, "links.nodes", f"{name!r} is not a node of this network (nodes: "
                                               f"{', '.join(node_names)})")
        nodes.append((name, _params(source, f"links.nodes.{name}", tbl)))
    regions: list[tuple[str, str]] = []
    for region, members in _table(source, "links.regions", raw.get("regions", {})).items():
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise _fail(source, "links.regions", f"{region} must be a list of node names, got {members!r}")
        for m in members:
            if m not in names:
                raise _fail(source, "links.regions", f"{region} names {m!r}, which is not a node of this network")
            if m in dict(regions):
                raise _fail(source, "links.regions", f"{m!r} is in two regions ({dict(regions)[m]} and {region})")
            regions.append((m, region))
    region_names = {r for _, r in regions}
    matrix = []
    for key, ms in _table(source, "links.matrix", raw.get("matrix", {})).items():
        parts = key.split("-")
        if len(parts) != 2 or not all(p in region_names for p in parts):
            raise _fail(source, "links.matrix", f"key {key!r} must be \"REGION-REGION\" with regions from "
                                                f"[links.regions] ({', '.join(sorted(region_names)) or 'none'})")
        v = _num(source, "links.matrix", {key: ms}, key, 0, MAX_LATENCY_MS)
        assert v is not None
        matrix.append((parts[0], parts[1], v))
    pairs = []
    raw_pairs = raw.get("pairs", [])
    if not isinstance(raw_pairs, list):
        raise _fail(source, "links.pairs", "must be an array of tables ([[links.pairs]])")
    for i, tbl in enumerate(raw_pairs):
        w = f"links.pairs[{i}]"
        if not isinstance(tbl, Mapping):
            raise _fail(source, w, "must be a table with a, b and link fields")
        ends = [tbl.get("a"), tbl.get("b")]
        for e, v in zip("ab", ends, strict=True):
            if v not in names:
                raise _fail(source, w, f"field {e!r} must name a node of this network, got {v!r}")
        if ends[0] == ends[1]:
            raise _fail(source, w, f"a and b are the same node ({ends[0]}): a pair joins two nodes")
        p = _params(source, w, tbl, extra=frozenset({"a", "b"}))
        if p.empty:
            raise _fail(source, w, "sets nothing: give latency_ms, jitter_ms, loss_percent or rate_mbit")
        pairs.append(PairRule(str(ends[0]), str(ends[1]), p))
    for w, p in [(where, default), *((f"links.classes.{c}", p) for c, p in classes),
                 *((f"links.nodes.{n}", p) for n, p in nodes), *((f"links.pairs[{i}]", r.params)
                                                                  for i, r in enumerate(pairs))]:
        if p.loss_percent is not None and p.loss_percent >= 100:
            raise _fail(source, w, f"loss_percent must be < 100, got {p.loss_percent:g}")
    return LinkModel(default, tuple(classes), tuple(nodes), tuple(regions), tuple(matrix), tuple(pairs), preset,
                     mechanism, optional, None if mss is False else int(mss), seed, congestion,
                     congestion_optional)


def _table(source: str, where: str, raw: Any) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise _fail(source, where, f"must be a table, got {type(raw).__name__}")
    return raw


def _choice(source: str, where: str, tbl: Mapping[str, Any], key: str, enum_cls: type[enum.Enum],
            default: Any) -> Any:
    if key not in tbl:
        return default
    v = tbl[key]
    for m in enum_cls:
        if m.value == v:
            return m
    raise _fail(source, where, f"field {key!r} = {v!r} is not one of {', '.join(repr(m.value) for m in enum_cls)}")
