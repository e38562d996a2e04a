"""Typed records the harness writes itself, and reads back through harness.store.queries.

The collector's own (a session, a gap in the connection) and the main job's (a phase's
plan and results, tying its run id to its variant; a download). Each turns into a
:class:`~harness.store.records.Record` of its kind with the fields stored since before
these types existed, so stores written before and after read alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.store.records import Kind, Record

# --------------------------------------------------------------------------- the collector's


@dataclass(frozen=True)
class Session:
    """One collect invocation: its run id, the control port it reached, and what the caller
    adds (configuration, seed, arms)."""

    run_id: str
    control: str
    extra: Mapping[str, Any] = field(default_factory=dict)

    def record(self, ts: float) -> Record:
        return Record(Kind.SESSION, ts, {**self.extra, "run_id": self.run_id, "control": self.control})


@dataclass(frozen=True)
class Gap:
    """The control connection was down from start to end (s since the epoch); ``open``: it
    never came back before the collection ended, ``last_error`` says why. Stored at start."""

    start: float
    end: float
    reason: str
    open: bool = False
    last_error: str = ""

    def record(self) -> Record:
        data: dict[str, Any] = {"start": self.start, "end": self.end, "seconds": self.end - self.start,
                                "reason": self.reason}
        if self.open:
            data.update({"open": True, "last_error": self.last_error})
        return Record(Kind.GAP, self.start, data)


# --------------------------------------------------------------------------- the main job's


@dataclass(frozen=True)
class VariantPlan:
    """A traffic phase as planned, stored when it starts (so a phase that fails is still tagged).

    The store's schema has no variant column: this record ties the phase's run id to its
    condition, so a report redrawn from the store alone splits every figure by variant."""

    variant: str
    describe: str = ""
    load_scale: float = 1.0
    loops: int = 1
    pause_factor: float = 1.0
    client_shaping: Mapping[str, Any] = field(default_factory=dict)
    duration_s: float | None = None
    period_s: float | None = None
    period_warning: str = ""
    seed: int = 0
    skipped: str = ""  # why it cannot run here; empty when it runs

    def record(self, ts: float) -> Record:
        return Record(Kind.VARIANT, ts, asdict(self))


@dataclass(frozen=True)
class VariantResult:
    """What a phase that ran produced, stored when it ends (merged with its plan on reading)."""

    variant: str
    start: float
    end: float
    downloads: int
    straddled: int
    per_arm: Mapping[str, int]
    straddle_note: str = ""

    def record(self) -> Record:
        return Record(Kind.VARIANT, self.end, asdict(self))


@dataclass(frozen=True)
class PhaseRecord:
    """A phase read back from its ``variant`` records: the plan's fields and the result's."""

    variant: str
    describe: str = ""
    period_s: float | None = None
    duration_s: float | None = None
    period_warning: str = ""
    skipped: str = ""
    straddle_note: str = ""

    @classmethod
    def from_data(cls, data: Mapping[str, Any], default_name: str) -> PhaseRecord:
        def number(v: Any) -> float | None:
            return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None

        return cls(str(data.get("variant", default_name)), str(data.get("describe", "")),
                   number(data.get("period_s")), number(data.get("duration_s")),
                   str(data.get("period_warning") or ""), str(data.get("skipped") or ""),
                   str(data.get("straddle_note") or ""))


@dataclass(frozen=True)
class DownloadRecord:
    """One client download read back (written as ``harness.traffic.clients.Download``'s fields;
    its arm, or STRADDLE, is the record's context). NaN where no byte arrived."""

    client: str
    size: int
    ttfb_s: float
    ttlb_s: float
    ok: bool

    @classmethod
    def from_data(cls, data: Mapping[str, Any], default_client: str) -> DownloadRecord:
        return cls(str(data.get("client", default_client)), int(data["size"]),
                   float(data.get("ttfb_s") or math.nan), float(data.get("ttlb_s") or math.nan),
                   data.get("outcome") == "ok" and data.get("ttlb_s") is not None)


# --------------------------------------------------------------------------- the differential's


@dataclass(frozen=True)
class JudgeRecord:
    """What judged a run's records when it was not the faithful model (``run --policy``): the
    spec, the class, the scheduler whose runs it replays, its file and the file's hash, and
    the researcher's patches built on top of the series (``run --patches``)."""

    spec: str
    qualname: str
    judges: str
    source: str
    sha256: str
    extra_patches: tuple[str, ...] = ()

    def record(self, ts: float) -> Record:
        return Record(Kind.JUDGE, ts, {"spec": self.spec, "class": self.qualname, "judges": self.judges,
                                       "source": self.source, "sha256": self.sha256,
                                       "extra_patches": list(self.extra_patches)})

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> JudgeRecord:
        return cls(str(data.get("spec", "")), str(data.get("class", "")), str(data.get("judges", "")),
                   str(data.get("source", "")), str(data.get("sha256", "")),
                   tuple(str(p) for p in data.get("extra_patches", ()) or ()))

    def describe(self) -> str:
        """The policy, as the report's environment table says it."""
        if not self.spec:
            return "the faithful model (kist_reference.scheduler.POLICIES)"
        return f"{self.spec} ({self.qualname}, judges the {self.judges} runs, {self.source} sha256 {self.sha256[:12]})"
