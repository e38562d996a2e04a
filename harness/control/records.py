"""Typed records: what the collector stores, one per event, snapshot, gap or error.

Every stored record is tied to a :class:`Context` (run id, relay fingerprint, arm, Tor
version, patch hash), so a record can be read back without any other state.
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


@dataclass(frozen=True)
class Context:
    """Who a record is about: carried by every record in the store."""

    run_id: str
    fingerprint: str = "unknown"
    tor_version: str = "unknown"
    patch_hash: str = "none"
    arm: str = "-"


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
