"""The differential check: every recorded KIST run replayed through kist_reference.

Reads KIST_RUN records from a store (or a trace file), replays each through the faithful
model, measures its distance from the paper's ideal algorithm, and writes one minimal
reproducer file per divergent run (that single record, as JSON lines) so a divergence can
be re-checked with ``kist-harness model replay FILE`` alone.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.store.db import Store
from harness.store.queries import run_payloads
from kist_reference.socket import CELL_CHARGE

if TYPE_CHECKING:
    from harness.checks.coverage import CoverageReport, ModelCoverage
    from kist_reference.scheduler import Policy

FAITHFUL_JUDGE = "the faithful model"

log = logging.getLogger(__name__)

MAX_REPRODUCERS = 50  # a broken model diverges on every run: keep the first few
MAX_INTERVAL_LINES = 10  # a wrong interval is wrong in every run: name a few, count the rest


@dataclass(frozen=True)
class Recorded:
    """One recorded run and where it came from."""

    relay: str
    arm: str
    payload: str  # the KIST_RUN wire payload, verbatim
    # the run intervals the relay's torrc and consensus allow (harness.checks.runinterval);
    # None: not known (a trace file, a store without snapshots), not checked
    allowed_intervals: frozenset[int] | None = None


@dataclass(frozen=True)
class DivergentRun:
    """One recorded run where Tor decided otherwise than the faithful model, as the report
    lists it: where (``index``: the decision), both choices, why, and the reproducer file.
    (``kist_reference.replay.Divergence`` is the model's account of the same decision.)"""

    run: int
    relay: str
    index: int
    expected: str
    actual: str
    explanation: str
    reproducer: str


@dataclass(frozen=True)
class DiffSummary:
    """The differential result: how many runs and decisions matched the faithful model."""

    runs: int = 0
    decisions: int = 0
    divergences: tuple[DivergentRun, ...] = ()
    ideal_cells: int = 0
    ideal_cells_better_waiting: int = 0
    invariant_violations: tuple[str, ...] = ()
    coverage: CoverageReport | None = None  # the model's branches the runs took (harness.checks.coverage)
    judged_by: str = FAITHFUL_JUDGE  # what the runs were replayed through (--policy: harness.checks.policy)

    @property
    def ideal_share(self) -> float:
        """Share of cells sent while a better-priority circuit waited on another channel."""
        return self.ideal_cells_better_waiting / self.ideal_cells if self.ideal_cells else math.nan


def runs_from_store(store_path: Path, *, run_id: str | None = None) -> Iterator[Recorded]:
    """KIST_RUN records of a collector store, in arrival order, each with the run intervals
    its relay's settings allow."""
    from harness.checks.runinterval import allowed_intervals

    with Store(store_path, readonly=True) as store:
        allowed = allowed_intervals(store)
        for ctx, payload in run_payloads(store, run_id=run_id):
            yield Recorded(ctx.fingerprint, ctx.arm, payload, allowed.get(ctx.fingerprint))


def check(
    runs: Iterable[Recorded],
    outdir: Path,
    *,
    ideal: bool = True,
    progress: Callable[[int, int, int], None] | None = None,
    coverage: ModelCoverage | None = None,
    policies: Mapping[str, Callable[[], Policy]] | None = None,
    judged_by: str = FAITHFUL_JUDGE,
    stop_at_first: bool = False,
) -> DiffSummary:
    """Replay every run; return the summary and write reproducers under ``outdir/divergences``.

    ``policies`` maps a scheduler (a record's ``SCHED``) to a factory of the policy its runs
    are replayed with instead of the faithful one (``--policy``, harness.checks.policy); one
    policy is made per run. ``judged_by`` names it in the summary.

    With ``coverage`` (harness.checks.coverage), each replay is traced and the summary
    says which of the model's decision branches the runs took. ``stop_at_first`` ends the
    replay at the first divergence (harness.mutants: one is enough to kill a mutant).
    """
    from harness.checks.runinterval import violation as interval_violation
    from kist_reference import trace
    from kist_reference.ideal import ideal_distance
    from kist_reference.replay import replay_run

    n_runs = decisions = cells = better_waiting = bad_intervals = 0
    divergences: list[DivergentRun] = []
    violations: list[str] = []
    repro_dir = outdir / "divergences"
    for item in runs:
        try:
            record = trace.parse_wire(item.payload)
        except trace.TraceError as exc:
            violations.append(f"unreadable KIST_RUN record from {item.relay}: {exc}")
            continue
        n_runs += 1
        make = policies.get(record.sched) if policies else None
        policy = make() if make is not None else None
        if coverage is None:
            result = replay_run(record, policy)
        else:
            with coverage.measuring():
                result = replay_run(record, policy)
        decisions += result.decisions
        if result.divergence is not None:
            div = result.divergence
            reproducer = ""
            if len(divergences) < MAX_REPRODUCERS:
                repro_dir.mkdir(parents=True, exist_ok=True)
                path = repro_dir / f"{_safe(item.relay)}-run{record.run}.jsonl"
                trace.write_records(path, [record])
                reproducer = str(path)
            divergences.append(DivergentRun(
                run=record.run, relay=item.relay, index=div.decision,
                expected=div.model, actual=div.tor,
                explanation=f"{div.what} at {'step ' + str(div.step) if div.step is not None else 'end of run'}; "
                            + "; ".join(div.context),
                reproducer=reproducer))
        elif ideal and record.sched != "Vanilla" and policy is None:  # the ideal distance replays the faithful KIST
            _res, dist = ideal_distance(record)
            cells += dist.cells
            better_waiting += dist.cross_channel
        violations.extend(_invariants(record))
        bad = interval_violation(item.relay, record.run, record.sched, record.params.interval_ms,
                                 item.allowed_intervals)
        if bad is not None:
            bad_intervals += 1
            if bad_intervals <= MAX_INTERVAL_LINES:
                violations.append(bad)
        if progress is not None and n_runs % 500 == 0:
            progress(n_runs, decisions, len(divergences))
        if stop_at_first and divergences:
            break
    if bad_intervals > MAX_INTERVAL_LINES:
        violations.append(f"... and {bad_intervals - MAX_INTERVAL_LINES} more runs with a run interval "
                          "their relay's settings do not allow")
    log.info("replayed %d runs, %d decisions, %d divergences", n_runs, decisions, len(divergences))
    return DiffSummary(n_runs, decisions, tuple(divergences), cells, better_waiting, tuple(violations),
                       coverage.finish() if coverage is not None else None, judged_by)


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
        if limit is not None and cells * CELL_CHARGE > limit + CELL_CHARGE:
            out.append(f"run {record.run}: channel {chan} sent {cells} cells ({cells * CELL_CHARGE} B) "
                       f"over its limit of {limit} B plus one cell")
    return out


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:40] or "relay"
