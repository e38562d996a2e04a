"""Every record kind the store holds, declared once, and the typed records the harness writes.

Every stored record is tied to a :class:`Context` (run id, relay fingerprint, arm, Tor
version, patch hash), so a record can be read back without any other state. Event
records take the control-port event's name as their kind (``KIST_RUN``, ``BW``, ...);
the records the collector and the main job make themselves are the :class:`Kind`s, with
their typed forms in ``harness.store.typed``. Any module that writes or reads a kind
names it from here, never as a literal.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class Kind(enum.StrEnum):
    """Record kinds the collector itself makes; event records use the event name (e.g. BW)."""

    SESSION = "session"      # one per collect invocation: configuration, seed, arms
    FEATURES = "features"    # per connection: what tor offered and what was unavailable
    SNAPSHOT = "snapshot"    # periodic GETINFO/GETCONF values
    GAP = "gap"              # the control connection was down between start and end
    ARM = "arm"              # an A/B switch: which settings were applied when
    ERROR = "error"          # a malformed event: the raw line and why
    SHED = "shed"            # events dropped because the writer fell behind
    END = "end"              # clean end of a collection: final counters
    # written by the main job (harness.run), not the collector
    DOWNLOAD = "download"    # one client download, its arm in the context (DownloadRecord)
    VARIANT = "variant"      # a traffic phase's plan, then its results (VariantPlan, VariantResult)
    JUDGE = "judge"          # the policy the differential replayed the runs with (--policy), extra patches


# Event kinds: the patch's events (docs/control-events.md) and the standard ones read back.
KIST_RUN = "KIST_RUN"            # one scheduler run, complete (docs/trace-format.md)
KIST_OVERHEAD = "KIST_OVERHEAD"  # 4.1.y: what one scheduler run cost
KIST_QTIME = "KIST_QTIME"        # 4.1.z: Tor queue time of each cell a run flushed
KIST_KQTIME = "KIST_KQTIME"      # 4.1.w: kernel queue time of a sampled write (SNDNS: the paper's)
BW = "BW"                        # bytes read/written each second: goodput

# Context.arm of records no arm is attributed to: before the first switch, and downloads
# that ran across an arm switch.
NO_ARM = "-"
STRADDLE = "straddle"
UNATTRIBUTED = frozenset({NO_ARM, STRADDLE})


@dataclass(frozen=True)
class Context:
    """Who a record is about: carried by every record in the store."""

    run_id: str
    fingerprint: str = "unknown"
    tor_version: str = "unknown"
    patch_hash: str = "none"
    arm: str = NO_ARM


@dataclass(frozen=True)
class Record:
    """One stored fact: kind, wall-clock arrival time (s since the epoch) and typed fields.

    ``raw`` keeps wire text verbatim where it is the record of truth: a KIST_RUN payload
    (so the export for replay is lossless) or a malformed line. It is stored in its own
    column so queries on ``data`` never parse kilobytes of run record.
    """

    kind: str
    ts: float
    data: Mapping[str, Any] = field(default_factory=dict)
    raw: str | None = None


def error_record(ts: float, raw: str, reason: str) -> Record:
    """A malformed line, kept verbatim so it can be re-parsed once the parser is fixed."""
    return Record(Kind.ERROR, ts, {"reason": reason}, raw)
