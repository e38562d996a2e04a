"""The differential check: every recorded KIST run replayed through kist_reference.

Reads KIST_RUN records from a store (or a trace file), replays each through the faithful
model, measures its distance from the paper's ideal algorithm, and writes one minimal
reproducer file per divergent run (that single record, as JSON lines) so a divergence can
be re-checked with ``kist-harness model replay FILE`` alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from harness.report.model import DiffSummary, Divergence

log = logging.getLogger(__name__)

MAX_REPRODUCERS = 50  # a broken model diverges on every run: keep the first few


@dataclass(frozen=True)
class Recorded:
    """One recorded run and where it came from."""

    relay: str
    arm: str
    payload: str  # the KIST_RUN wire payload, verbatim


def runs_from_store(store_path: Path, *, run_id: str | None = None) -> Iterator[Recorded]:
    """KIST_RUN records of a collector store, in arrival order."""
    from harness.control.events import KIST_RUN
    from harness.control.store import Store

    with Store(store_path, readonly=True) as store:
        for ctx, rec in store.records(KIST_RUN, run_id=run_id):
            if rec.raw is not None:
                yield Recorded(ctx.fingerprint, ctx.arm, rec.raw)


def check(
    runs: Iterable[Recorded],
    outdir: Path,
    *,
    ideal: bool = True,
    progress: Callable[[int, int, int], None] | None = None,
) -> DiffSummary:
    """Replay every run; return the summary and write reproducers under ``outdir/divergences``."""
    from kist_reference import trace
    from kist_reference.ideal import ideal_distance
    from kist_reference.replay import replay_run

    n_runs = decisions = cells = better_waiting = 0
    divergences: list[Divergence] = []
    violations: list[str] = []
    repro_dir = outdir / "divergences"
    for item in runs:
        try:
            record = trace.parse_wire(item.payload)
        except trace.TraceError as exc:
            violations.append(f"unreadable KIST_RUN record from {item.relay}: {exc}")
            continue
        n_runs += 1
        result = replay_run(record)
        decisions += result.decisions
        if result.divergence is not None:
            div = result.divergence
            reproducer = ""
            if len(divergences) < MAX_REPRODUCERS:
                repro_dir.mkdir(parents=True, exist_ok=True)
                path = repro_dir / f"{_safe(item.relay)}-run{record.run}.jsonl"
                trace.write_records(path, [record])
                reproducer = str(path)
            divergences.append(Divergence(
                run=record.run, relay=item.relay, index=div.decision,
                expected=div.model, actual=div.tor,
                explanation=f"{div.what} at {'step ' + str(div.step) if div.step is not None else 'end of run'}; "
                            + "; ".join(div.context),
                reproducer=reproducer))
        elif ideal and record.sched != "Vanilla":
            _res, dist = ideal_distance(record)
            cells += dist.cells
            better_waiting += dist.cross_channel
        violations.extend(_invariants(record))
        if progress is not None and n_runs % 500 == 0:
            progress(n_runs, decisions, len(divergences))
    log.info("replayed %d runs, %d decisions, %d divergences", n_runs, decisions, len(divergences))
    return DiffSummary(n_runs, decisions, tuple(divergences), cells, better_waiting, tuple(violations))


def _invariants(record: object) -> list[str]:
    """Properties of Tor's own behaviour the paper's design promises, checked on the record.

    A socket never gets more than its limit plus one cell in a run (socket_can_write is
    checked before each one-cell flush), and the run ends with channels_pending holding
    only channels that were re-added.
    """
    from kist_reference import trace

    assert isinstance(record, trace.RunRecord)
    if record.sched == "Vanilla":
        return []
    out: list[str] = []
    limits = {s.chan: s.limit for s in record.snapshots[: record.n_pending]}
    sent: dict[int, int] = {}
    for step in record.steps:
        if isinstance(step, (trace.CellFlush, trace.DestroyFlush)):
            sent[step.chan] = sent.get(step.chan, 0) + 1
    for chan, cells in sent.items():
        limit = limits.get(chan)
        if limit is not None and cells * 543 > limit + 543:
            out.append(f"run {record.run}: channel {chan} sent {cells} cells ({cells * 543} B) "
                       f"over its limit of {limit} B plus one cell")
    return out


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:40] or "relay"
