"""`kist-harness report STORE`: redraw the report from any store, a live relay's included."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.checks.policy import PolicySpec


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("report", help="draw the paper-style report (and re-run the differential) from a store")
    p.add_argument("store", type=Path, help="a store written by `kist-harness run` or `kist-harness collect`, "
                   "or the --out directory of `kist-harness run paper` (redraws the grid's claims page)")
    p.add_argument("--out", type=Path, default=None, help="report directory (default: STORE's dir/report)")
    p.add_argument("--no-replay", action="store_true", help="skip re-running the differential check")
    p.add_argument("--coverage-data", type=Path, default=None, metavar="FILE",
                   help="coverage.py data file the model's branch coverage accumulates in across stores "
                   "(default: model-coverage.sqlite beside STORE)")
    p.add_argument("--policy", default=None, metavar="MODULE:CLASS",
                   help="re-run the differential with this policy (see `run --policy`); default: the one the store "
                   "records, else the faithful model; 'faithful' forces the faithful model")
    p.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    from harness import outdir
    from harness.checks import differential
    from harness.checks.coverage import DATA_FILE_NAME, ModelCoverage
    from harness.errors import InputError
    from harness.experiments import gridreport
    from harness.report.page import render
    from harness.report.read import read_store

    if gridreport.is_grid(args.store):
        return _report_grid(args)
    if not args.store.is_file():
        raise InputError(f"store {args.store}: no such file; give the store.sqlite of a run or the --out of "
                         "`kist-harness collect`.")
    out = args.out or args.store.resolve().parent / "report"
    outdir.check(out.resolve(), "--out")  # before the replay writes anything
    summary = None
    env: dict[str, str] = {}
    said: list[str] = []
    if not args.no_replay:
        judge, env, said = _judge(args.store, args.policy)
        for line in said:
            print(f"note: {line}")
        model_cov = ModelCoverage(args.coverage_data or args.store.resolve().parent / DATA_FILE_NAME)
        summary = differential.check(differential.runs_from_store(args.store), out.parent, coverage=model_cov,
                                     policies=judge.policies() if judge else None,
                                     judged_by=f"--policy {judge.spec}" if judge else differential.FAITHFUL_JUDGE)
    data = read_store(args.store, diff=summary, environment=env, notes=tuple(said))
    rendered = render(data, out)
    from harness.store.toolformats import add_to_report

    tools = add_to_report(args.store, rendered.directory)
    if summary is not None:
        cov = f" {summary.coverage.summary()}" if summary.coverage is not None else ""
        print(f"runs={summary.runs} decisions={summary.decisions} divergences={len(summary.divergences)}{cov}")
        if summary.coverage is not None:
            print("\n".join(summary.coverage.lines(max_missing=40)))
    print(tools)
    print(f"report: {rendered.html}")
    print(f"summary: {rendered.markdown}")
    return 1 if summary is not None and summary.divergences else 0


def _report_grid(args: argparse.Namespace) -> int:
    """A grid directory: the claims across its networks, from the cells' stores (no replay:
    each cell's differential ran with it and its done.json keeps the counts)."""
    from harness.experiments import claims, grid, gridreport

    if args.out is not None:
        from harness.errors import InputError

        raise InputError("--out: a grid's report goes to GRID_DIR/report; drop --out.")
    report, verdicts = gridreport.report_grid(args.store, grid.store_loader)
    print(claims.markdown_table(verdicts), end="")
    print(f"report: {report / 'index.html'}")
    print(f"summary: {report / 'summary.md'}")
    return 0


def _judge(store_path: Path, given: str | None) -> tuple[PolicySpec | None, dict[str, str], list[str]]:
    """The policy to re-judge with: --policy, else the one the store records (``run --policy``);
    with the report's environment lines and notes on what changed since the run."""
    from harness.checks import policy
    from harness.errors import InputError
    from harness.store import queries
    from harness.store.db import Store

    with Store(store_path, readonly=True) as store:
        recorded = queries.judge(store)
    env: dict[str, str] = {}
    notes: list[str] = []
    if recorded is not None and recorded.extra_patches:
        env["extra patches"] = ", ".join(recorded.extra_patches) + " (on top of the series)"
    if given == policy.FAITHFUL:
        if recorded is not None and recorded.spec:
            notes.append(f"the store was judged by --policy {recorded.spec}; re-judging with the faithful model")
        env["policy"] = "the faithful model (kist_reference.scheduler.POLICIES), --policy faithful"
        return None, env, notes
    spec = given or (recorded.spec if recorded is not None else "")
    if not spec:
        env["policy"] = "the faithful model (kist_reference.scheduler.POLICIES)"
        return None, env, notes
    if given is None:
        try:
            judge = policy.load(spec, flag="the store's policy")
        except InputError as exc:
            raise InputError(f"{exc} (The store {store_path} records that its runs were judged by --policy "
                             f"{spec}, from {recorded.source if recorded else '?'}; make it importable again, or pass "
                             "--policy MODULE:CLASS, or --policy faithful.)") from exc
    else:
        judge = policy.load(spec)
    if recorded is not None and recorded.spec and judge.sha256 and recorded.sha256 and judge.sha256 != recorded.sha256:
        notes.append(f"{judge.source} has changed since the run judged the store with it (sha256 "
                     f"{recorded.sha256[:12]} then, {judge.sha256[:12]} now)")
    env["policy"] = judge.describe() + ("" if given is None else ", given to report")
    return judge, env, notes
