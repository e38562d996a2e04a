"""Relay populations to sample networks from: a bundled summary, or a consensus a user has.

A population answers two questions for the sampler: how many relays of each role the
public network had, and the bandwidth of a relay of a role drawn at random. Roles come from
flags the way tornettools stages them: Exit (and not BadExit) -> exit, else Guard -> guard,
else middle.

The bundled population (``BUNDLED``) is a *summary*, not a consensus: per-role relay
counts and bandwidth quantiles, rounded readings of Tor Metrics' public graphs "Relays by
relay flag" and "Advertised bandwidth by rank" for January 2017, the month the paper's
Shadow network was generated from (paper sec. 4.1), with the total matching the paper's
"roughly 7,500 relays" (sec. 1, citing Tor Metrics). They are approximate: for exact
figures give a consensus (``from_consensus``, parsed with stem; CollecTor archives every
hourly consensus since 2007). No consensus is bundled because none ships in a package this
project installs.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from harness.config import Role
from harness.errors import InputError

RELAY_ROLES = (Role.GUARD, Role.MIDDLE, Role.EXIT)


@dataclass(frozen=True)
class Population:
    """Relay counts per role and, per role, either measured bandwidths or quantile points.

    ``bandwidths[role]`` is a sorted tuple of KiB/s values: every relay's (a consensus) or
    the values at ``quantile_points`` (the bundled summary), between which a draw is
    log-linearly interpolated."""

    name: str
    provenance: str
    counts: Mapping[Role, int]
    bandwidths: Mapping[Role, tuple[float, ...]]
    quantile_points: tuple[float, ...] | None = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def draw_bandwidth(self, role: Role, rng: random.Random) -> float:
        """One relay's bandwidth (KiB/s) for a role, drawn from the population."""
        vals = self.bandwidths[role]
        if self.quantile_points is None:
            return vals[rng.randrange(len(vals))]
        u = rng.random()
        qs = self.quantile_points
        for i in range(1, len(qs)):
            if u <= qs[i]:
                f = (u - qs[i - 1]) / (qs[i] - qs[i - 1])
                lo, hi = math.log(vals[i - 1]), math.log(vals[i])
                return math.exp(lo + f * (hi - lo))
        return vals[-1]


# KiB/s at these quantiles (rounded readings; see the module docstring).
_Q = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)
BUNDLED = Population(
    name="tor-metrics-2017-01-summary",
    provenance="Tor Metrics 'Relays by relay flag' and 'Advertised bandwidth by rank', 2017-01, "
               "rounded readings (approximate); paper sec. 1/4.1",
    counts={Role.GUARD: 2400, Role.MIDDLE: 4200, Role.EXIT: 900},
    bandwidths={
        Role.GUARD: (250.0, 1000.0, 2500.0, 6000.0, 14000.0, 30000.0, 80000.0, 120000.0),
        Role.MIDDLE: (20.0, 60.0, 150.0, 500.0, 2000.0, 6000.0, 25000.0, 60000.0),
        Role.EXIT: (50.0, 300.0, 1000.0, 3500.0, 12000.0, 30000.0, 80000.0, 120000.0),
    },
    quantile_points=_Q,
)


def role_of(flags: Iterable[str]) -> Role:
    """tornettools' staging rule: Exit (not BadExit) -> exit, Guard -> guard, else middle."""
    f = set(flags)
    if "Exit" in f and "BadExit" not in f:
        return Role.EXIT
    if "Guard" in f:
        return Role.GUARD
    return Role.MIDDLE


def from_consensus(path: Path) -> Population:
    """Every Running, Valid relay of a v3 consensus file, with its consensus weight as bandwidth.

    The weight (``w Bandwidth=``) is in the consensus' own units (bandwidth-authority
    measured, roughly KB/s), which is what tor's path selection uses."""
    try:
        from stem.descriptor import DocumentHandler, parse_file
    except ImportError as exc:  # stem is a dependency; a broken install says so
        raise InputError("reading a consensus needs stem (pip install stem==1.8.2)") from exc
    if not path.is_file():
        raise InputError(f"consensus {path}: no such file (give a v3 consensus, e.g. a CollecTor "
                         "'consensuses-YYYY-MM' file or tor's cached-consensus)")
    per_role: dict[Role, list[float]] = {r: [] for r in RELAY_ROLES}
    try:
        with path.open("rb") as fh:
            entries = parse_file(fh, "network-status-consensus-3 1.0", document_handler=DocumentHandler.ENTRIES,
                                 validate=True)
            for e in entries:
                flags = set(e.flags or ())
                if not {"Running", "Valid"} <= flags or not e.bandwidth:
                    continue
                per_role[role_of(flags)].append(float(e.bandwidth))
    except (ValueError, OSError) as exc:
        raise InputError(f"consensus {path}: stem could not parse it: {exc} (is it a v3 network-status "
                         "consensus? a server-descriptor or microdesc file will not do)") from exc
    missing = [r.value for r in RELAY_ROLES if not per_role[r]]
    if missing:
        raise InputError(f"consensus {path}: no Running, Valid relay with a weight for role(s) "
                         f"{', '.join(missing)}; a network needs guards, middles and exits")
    return Population(name=path.name, provenance=f"consensus file {path}",
                      counts={r: len(v) for r, v in per_role.items()},
                      bandwidths={r: tuple(sorted(v)) for r, v in per_role.items()})
