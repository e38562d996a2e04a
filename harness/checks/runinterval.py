"""The run interval each KIST run recorded, against what torrc and the consensus say it is.

Why: the model replays a run with the interval the run itself reports (``IVAL``), so a Tor
that computes the interval wrongly (a changed clamp, a consensus parameter read under the
wrong name) would never diverge. This check closes that gap from outside the record: the
collector stores the relay's ``KISTSchedRunInterval`` (SNAPSHOT ``conf``, and each arm's
SETCONF) and the consensus parameters it sees, and ``kist_scheduler_run_interval``
(scheduler_kist.c:807-833, in the model as ``kist_reference.scheduler.kist_run_interval``)
turns them into the only values ``IVAL`` may take.

The rule is per relay, over the union of every setting it had during the collection: a
run recorded just after an arm switch may still carry the previous arm's interval, and
records are attributed to the arm in force when they arrived, not when Tor made them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from harness.store.db import Store
from harness.store.records import Kind
from kist_reference.scheduler import kist_run_interval

OPTION = "KISTSchedRunInterval"
_UNIT_MS = {"": 1, "ms": 1, "msec": 1, "msecs": 1, "millisecond": 1, "milliseconds": 1,
            "s": 1000, "sec": 1000, "secs": 1000, "second": 1000, "seconds": 1000}
_VALUE = re.compile(r"^\s*(\d+)\s*([a-z]*)\s*$")


def parse_ms(text: str) -> int | None:
    """A torrc MSEC_INTERVAL value ("10", "0 msec", "1 second") in ms; None if unreadable."""
    m = _VALUE.match(str(text).lower())
    if m is None or m.group(2) not in _UNIT_MS:
        return None
    return int(m.group(1)) * _UNIT_MS[m.group(2)]


def allowed_intervals(store: Store) -> dict[str, frozenset[int]]:
    """Relay fingerprint -> every run interval its settings allow. A relay whose torrc value
    was never recorded (older stores, relays collected without snapshots) is left out: no
    rule, rather than a wrong one."""
    torrc: dict[str, set[int]] = {}
    consensus: dict[str, set[int | None]] = {}

    def note_torrc(fp: str, settings: Any) -> None:
        if isinstance(settings, Mapping) and OPTION in settings:
            ms = parse_ms(settings[OPTION])
            if ms is not None:
                torrc.setdefault(fp, set()).add(ms)

    for ctx, rec in store.records(Kind.SNAPSHOT):
        note_torrc(ctx.fingerprint, rec.data.get("conf"))
        params = rec.data.get("consensus_params")
        value = params.get(OPTION) if isinstance(params, Mapping) else None
        consensus.setdefault(ctx.fingerprint, set()).add(int(value) if value is not None
                                                         and str(value).lstrip("-").isdigit() else None)
    for ctx, rec in store.records(Kind.ARM):
        for key in ("settings", "original", "restored"):
            note_torrc(ctx.fingerprint, rec.data.get(key))
    return {fp: frozenset(kist_run_interval(t, c) for t in values for c in (consensus.get(fp) or {None}))
            for fp, values in torrc.items()}


def violation(relay: str, run: int, sched: str, ival: int, allowed: frozenset[int] | None) -> str | None:
    """Why a run's interval (IVAL) is one its relay's settings do not allow; None if it is
    allowed, a Vanilla run (no interval), or the settings are unknown."""
    if sched == "Vanilla" or allowed is None or ival in allowed:
        return None
    return (f"run {run} on {relay[:8]}: {sched} ran with a {ival} ms interval, but its torrc and "
            f"consensus allow only {sorted(allowed)} ms (kist_scheduler_run_interval, scheduler_kist.c:807-833)")
