"""`kist-harness report STORE`: redraw the report from any store, a live relay's included."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("report", help="draw the paper-style report (and re-run the differential) from a store")
    p.add_argument("store", type=Path, help="a store written by `kist-harness run` or `kist-harness collect`")
    p.add_argument("--out", type=Path, default=None, help="report directory (default: STORE's dir/report)")
    p.add_argument("--no-replay", action="store_true", help="skip re-running the differential check")
    p.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    from harness import diff
    from harness.errors import InputError
    from harness.report.load import interval_ms, load
    from harness.report.page import render

    if not args.store.is_file():
        raise InputError(f"store {args.store}: no such file; give the store.sqlite of a run or the --out of "
                         "`kist-harness collect`.")
    out = args.out or args.store.resolve().parent / "report"
    summary = None if args.no_replay else diff.check(diff.runs_from_store(args.store), out.parent)
    data = load(args.store, diff=summary)
    rendered = render(data, out, interval_ms=interval_ms(args.store))
    if summary is not None:
        print(f"runs={summary.runs} decisions={summary.decisions} divergences={len(summary.divergences)}")
    print(f"report: {rendered.html}")
    print(f"summary: {rendered.markdown}")
    return 1 if summary is not None and summary.divergences else 0
