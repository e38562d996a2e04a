"""The smallest set of recorded runs that takes every model branch a body of runs takes.

Replaying a whole main-job store takes seconds and needs the store; a handful of runs
chosen to take the same branches replays in a fraction of a second and can be committed
(``tests/data/corpus-runs.jsonl``), so a model change that breaks a rare path fails the unit
suite at once, without Tor. Each run is replayed under coverage.py with a dynamic context of
its own; then a greedy weighted set cover (most new branches per byte of record first) picks
the runs.

    python -m harness.checks.corpus STORE_OR_JSONL... --out tests/data/corpus-runs.jsonl

writes the chosen runs (JSON lines, a ``#`` header saying where they came from) and, beside
them, ``corpus-branches.txt``: the branch names the corpus takes, which the unit test holds
it to.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import coverage

from harness.checks.coverage import (
    CONTEXT_PREFIX,
    CoverageReport,
    _BranchNames,
    model_files,
    model_version,
    module_table,
)
from harness.errors import HarnessError, InputError


@dataclass(frozen=True)
class Candidate:
    """One recorded run, where it came from, and the branch names its replay took."""

    source: str
    record: object  # kist_reference.trace.RunRecord
    size: int       # bytes of its JSON line: what the corpus costs
    branches: frozenset[str]
    diverged: bool


def records_from(path: Path) -> Iterable[tuple[str, object]]:
    """(source, record) from a store (``*.sqlite``) or a JSON-lines/wire trace file."""
    from kist_reference import trace

    if path.suffix in (".sqlite", ".db"):
        from harness.checks.differential import runs_from_store

        for item in runs_from_store(path):
            try:
                yield f"{path.parent.name}/{path.name}:{item.relay[:8]}", trace.parse_wire(item.payload)
            except trace.TraceError:
                continue
        return
    try:
        for rec in trace.read_records(path):
            yield path.name, rec
    except trace.TraceError as exc:
        raise InputError(f"{path}: {exc}") from exc


def signature(rec: object) -> tuple[object, ...]:
    """What sets a run's path apart, cheaply: scheduler, flags, the kinds of steps and outcomes.

    Runs with one signature mostly take the same branches; only the smallest of each is
    measured on its own (a context per run costs a flush per run), and ``build`` checks the
    cover against the union of *every* run's branches, measured in one pass.
    """
    from kist_reference import trace

    assert isinstance(rec, trace.RunRecord)
    kinds = frozenset(trace.STEP_OPS[type(s)] + (str(s[1]) if isinstance(s, (trace.Outcome, trace.External)) else "")
                      for s in rec.steps)
    f = rec.params.sock_buf_factor
    return (rec.sched, rec.params.no_kernel_support, f != f, f > 1e18, f < 0.1, min(rec.n_pending, 3),
            len(rec.readd) > 0, len(rec.final) > 0, rec.next_us > 0, kinds, type(rec.sock[0]).__name__ if rec.sock
            else "")


def union_of(items: Iterable[tuple[str, object]]) -> tuple[CoverageReport, list[tuple[str, object]]]:
    """Every branch all the runs take (one coverage context), and the runs themselves."""
    from harness.checks.coverage import ModelCoverage
    from kist_reference.replay import replay_run

    meter = ModelCoverage()
    kept = []
    for source, rec in items:
        with meter.measuring():
            replay_run(rec)  # type: ignore[arg-type]
        kept.append((source, rec))
    return meter.finish(), kept


def measure(items: Iterable[tuple[str, object]]) -> list[Candidate]:
    """Replay each run in a coverage context of its own; the branch names each took."""
    from kist_reference import trace
    from kist_reference.replay import replay_run

    files = model_files()
    ctx = CONTEXT_PREFIX + model_version()
    cov = coverage.Coverage(data_file=None, branch=True, config_file=False, include=list(files.values()))
    runs: list[tuple[str, object, int, bool]] = []
    cov.start()
    try:
        for i, (source, rec) in enumerate(items):
            assert isinstance(rec, trace.RunRecord)
            cov.switch_context(f"{ctx}/{i}")
            diverged = replay_run(rec).divergence is not None
            runs.append((source, rec, len(trace.to_json(rec)) + 1, diverged))
    finally:
        cov.stop()
    data = cov.get_data()
    # the branch arcs of each module (taken or not), named once
    names: dict[str, dict[tuple[int, int], str]] = {}
    for module, path in files.items():
        analysis = cov._analyze(path)
        namer = _BranchNames(module, Path(path).read_text())
        arcs = {**analysis.missing_branch_arcs()}
        for src, dsts in analysis.executed_branch_arcs().items():
            arcs[src] = [*arcs.get(src, []), *dsts]
        names[path] = {(src, dst): namer.branch(src, dst).key for src, dsts in arcs.items() for dst in dsts}
    out = []
    for i, (source, rec, size, diverged) in enumerate(runs):
        data.set_query_contexts([f"^{ctx}/{i}$"])
        taken = frozenset(names[p][a] for p in files.values() for a in (data.arcs(p) or ()) if a in names[p])
        out.append(Candidate(source, rec, size, taken, diverged))
    data.set_query_contexts(None)
    return out


def union_from(paths: Sequence[Path]) -> frozenset[str]:
    """Branches recorded in cumulative data files (``--coverage-data`` of run/report) of the sources."""
    import re

    from harness.checks.coverage import analyse

    files = model_files()
    ctx = CONTEXT_PREFIX + model_version()
    keys: frozenset[str] = frozenset()
    for path in paths:
        cov = coverage.Coverage(data_file=str(path), branch=True, config_file=False, include=list(files.values()))
        cov.load()
        cov.get_data().set_query_contexts(["^" + re.escape(ctx) + "$"])
        keys |= analyse(cov, files).keys()
    return keys


def build(items: Iterable[tuple[str, object]], per_signature: int = 3,
          known: Sequence[Path] = ()) -> tuple[list[Candidate], CoverageReport | None, list[Candidate]]:
    """(candidates measured, the branches all the runs take, the chosen cover).

    With ``known`` (cumulative data files the sources were replayed into), the union is read
    from them instead of replaying every run once more under coverage."""
    if known:
        union, runs = None, list(items)
    else:
        union, runs = union_of(items)
    groups: dict[tuple[object, ...], list[tuple[str, object]]] = {}
    for source, rec in runs:
        groups.setdefault(signature(rec), []).append((source, rec))
    picked = []
    for members in groups.values():
        members.sort(key=lambda m: len(m[1].steps))  # type: ignore[attr-defined]
        # the smallest few, and the largest (the most steps of each kind)
        picked += members[:per_signature] + (members[-1:] if len(members) > per_signature else [])
    cands = measure(picked)
    chosen = greedy_cover(cands)
    return cands, union, chosen


def greedy_cover(cands: Sequence[Candidate]) -> list[Candidate]:
    """Runs until every branch any candidate takes is taken: most new branches per byte first."""
    left = frozenset().union(*(c.branches for c in cands)) if cands else frozenset()
    pool = [c for c in cands if not c.diverged]
    chosen: list[Candidate] = []
    while left:
        best = max(pool, key=lambda c: (len(c.branches & left) / c.size, -c.size))
        gain = best.branches & left
        if not gain:
            break  # only divergent runs take what is left: never committed as a passing corpus
        chosen.append(best)
        left -= gain
    return chosen


def main(argv: Sequence[str] | None = None) -> int:
    from kist_reference import trace

    ap = argparse.ArgumentParser(prog="python -m harness.checks.corpus", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sources", nargs="+", type=Path, help="stores (*.sqlite) or trace files (JSON lines)")
    ap.add_argument("--out", type=Path, required=True, help="the corpus file to write (JSON lines)")
    ap.add_argument("--union-from", type=Path, nargs="*", default=[], metavar="FILE",
                    help="cumulative coverage data files the sources were replayed into: read the union of "
                    "their branches from them instead of replaying every run again")
    ap.add_argument("--per-signature", type=int, default=3, metavar="N",
                    help="runs measured one by one per run signature (the smallest N and the largest)")
    ap.add_argument("--note", default="", help="a line for the header: how the sources were recorded")
    args = ap.parse_args(argv)
    try:
        for s in args.sources:
            if not s.is_file():
                raise InputError(f"{s}: no such file; give stores (*.sqlite) or JSON-lines traces.")
        cands, union, chosen = build((item for s in args.sources for item in records_from(s)),
                                     per_signature=args.per_signature, known=args.union_from)
        reached = (union.store.keys() if union is not None else union_from(args.union_from)).union(
            *(c.branches for c in cands))
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    covered = frozenset().union(*(c.branches for c in chosen)) if chosen else frozenset()
    per_source: dict[str, int] = {}
    for c in chosen:
        per_source[c.source] = per_source.get(c.source, 0) + 1
    header = [f"# {len(chosen)} runs chosen by `python -m harness.checks.corpus` from the recorded runs of "
              f"{', '.join(s.parent.name + '/' + s.name for s in args.sources)} ({len(cands)} measured one by one): a greedy set cover "
              f"of {len(covered)} of the {len(reached)} model branches all of them take."]
    if args.note:
        header.append(f"# {args.note}")
    header.append("# from: " + ", ".join(f"{k} {v}" for k, v in sorted(per_source.items())))
    body = [trace.to_json(c.record) for c in chosen]  # type: ignore[arg-type]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(header + body) + "\n")
    branches = args.out.with_name(args.out.stem.replace("-runs", "") + "-branches.txt")
    branches.write_text("# model branches the corpus takes (harness.checks.corpus); the unit test holds it to them\n"
                        + "\n".join(sorted(covered)) + "\n")
    print(f"candidates={len(cands)} divergent={sum(c.diverged for c in cands)} branches_reached={len(reached)} "
          f"chosen={len(chosen)} branches_covered={len(covered)} bytes={args.out.stat().st_size}")
    for key in sorted(reached - covered):
        print(f"not in the corpus (no measured run takes it): {key}")
    if union is not None:
        head, rows = module_table(union)  # every source's runs together: the coverage table
        print("| " + " | ".join(head) + " |")
        for r in rows:
            print("| " + " | ".join(r) + " |")
        print("\n".join(union.lines(reasons=True)))
    print(f"corpus: {args.out}\nbranches: {branches}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
