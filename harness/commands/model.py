"""`kist-harness model replay FILE`: replay recorded scheduler runs through kist_reference.

Exit 0 when every decision matches, 1 on any divergence (a finding), 2 when the file or a
policy cannot be read. ``--policy ideal`` measures the trace against the paper's
Algorithm 1 instead: exit 1 if Tor ever sent a cell while a better circuit waited.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import TYPE_CHECKING

from harness.errors import InputError

if TYPE_CHECKING:
    from kist_reference.scheduler import Policy
    from kist_reference.trace import RunRecord


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("model", help="the reference model of Tor's scheduler (kist_reference)")
    msub = p.add_subparsers(dest="model_command", required=True)
    r = msub.add_parser("replay", help="replay run records (JSON lines or KIST_RUN event lines) and "
                                       "report the first divergence of each run")
    r.add_argument("file", help="file of run records, one per line")
    r.add_argument("--policy", default="faithful",
                   help="faithful (Tor 0.4.9.11, the default), ideal (distance from the paper's "
                        "Algorithm 1) or module:Class (a Policy subclass of your own)")
    r.set_defaults(func=_replay)


def _load_policy(spec: str) -> Policy:
    """`module:Class` -> an instance of a kist_reference.scheduler.Policy subclass."""
    from kist_reference.scheduler import Policy

    module_name, sep, cls_name = spec.partition(":")
    if not sep or not module_name or not cls_name:
        raise InputError(f"--policy {spec!r}: expected faithful, ideal or module:Class "
                         "(e.g. mypolicies:WiderLimit, with mypolicies importable from the current directory)")
    if os.getcwd() not in sys.path:  # console scripts do not search the current directory
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(f"--policy {spec!r}: cannot import module {module_name!r} ({exc}); "
                         "check PYTHONPATH or run from the directory that holds it") from None
    cls = getattr(module, cls_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Policy)):
        raise InputError(f"--policy {spec!r}: {module_name}.{cls_name} is not a subclass of "
                         "kist_reference.scheduler.Policy")
    try:
        policy: Policy = cls()
    except Exception as exc:  # a user's constructor: report, never trace back
        raise InputError(f"--policy {spec!r}: {cls_name}() failed: {exc!r}") from None
    return policy


def _read(path: str) -> list[RunRecord]:
    from kist_reference.trace import TraceError, read_records

    try:
        return list(read_records(path))
    except TraceError as exc:
        raise InputError(f"cannot read run records: {exc}. Each line must be one KIST_RUN record "
                         "(JSON object or control-port event line) as docs/trace-format.md defines.") from None


def _replay(args: argparse.Namespace) -> int:
    from kist_reference import replay

    records = _read(args.file)
    if args.policy == "ideal":
        return _ideal(records)
    policy = None if args.policy == "faithful" else _load_policy(args.policy)
    results = [replay.replay_run(rec, policy) for rec in records]
    divergent = [r for r in results if r.divergence is not None]
    for r in divergent:
        assert r.divergence is not None
        print(r.divergence.describe())
    print(f"runs={len(results)} decisions={sum(r.decisions for r in results)} divergences={len(divergent)}"
          f" policy={args.policy}")
    return 1 if divergent else 0


def _ideal(records: list[RunRecord]) -> int:
    from kist_reference.ideal import IdealDistance, ideal_distance

    total = IdealDistance()
    decisions = 0
    diverged = 0
    for rec in records:
        result, dist = ideal_distance(rec)
        decisions += result.decisions
        if result.divergence is not None:
            diverged += 1
            print(f"run {rec.run}: faithful replay diverged at decision {result.divergence.decision}; "
                  "ideal distance measured up to there")
        total.add(dist)
    for first in total.firsts:
        print(first.describe())
    print(f"runs={len(records)} decisions={decisions} divergences={diverged} policy=ideal")
    print(f"ideal: cells={total.cells} inversions={total.inversions} (cross_channel={total.cross_channel} "
          f"intra_mux={total.intra_mux}) share={total.share():.4%} runs_departing={len(total.firsts)}")
    return 1 if total.inversions else 0
