"""`kist-harness mutants`: Tor variants with re-introduced bugs, each run through the edge scenario.

Prints the kill matrix (and writes it to OUT/matrix.json and OUT/matrix.md); exits 1
when a mutant survived, so a weaker differential shows in CI. ``--list`` prints the
catalogue and checks it against nothing: no build, no network.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from harness.mutants.matrix import DURATION_S, PERIOD_S

    p = sub.add_parser("mutants", help="build mutants of Tor's scheduler incrementally, run each through the "
                                       "edge scenario, print the kill matrix")
    p.add_argument("names", nargs="*", metavar="MUTANT", help="only these mutants (default: all)")
    p.add_argument("--out", type=Path, default=Path("runs/mutants"),
                   help="results directory (default runs/mutants); a finished mutant there is not rerun")
    p.add_argument("--fresh", action="store_true", help="rerun every mutant, discarding OUT's earlier results")
    p.add_argument("--catalog", type=Path, default=None, help="mutant catalogue (default: harness/mutants/catalog.toml)")
    p.add_argument("--duration", type=float, default=DURATION_S, help=f"traffic seconds per mutant (default {DURATION_S:g})")
    p.add_argument("--period", type=float, default=PERIOD_S, help=f"seconds per arm (default {PERIOD_S:g})")
    p.add_argument("--no-unit-tests", action="store_true", help="skip Tor's own scheduler unit tests per mutant")
    p.add_argument("--no-baseline", action="store_true",
                   help="skip the unmutated run that checks the shortened scenario has 0 divergences")
    p.add_argument("--list", action="store_true", help="print the catalogue and exit")
    p.add_argument("--tree-only", action="store_true",
                   help="only build (once) the kept tree the variants are copied from; print its path")
    p.set_defaults(func=_mutants)


def _mutants(args: argparse.Namespace) -> int:
    from harness import mutants
    from harness.errors import InputError
    from harness.mutants.matrix import markdown, run_matrix

    catalogue = mutants.select(mutants.load(args.catalog), args.names)
    if args.list:
        for m in catalogue:
            print(f"{m.name:32} {m.kind:10} {', '.join(m.files)}\n    {m.doc}")
            if m.adapted:
                print(f"    adapted: {m.adapted}")
        return 0
    if args.tree_only:
        from harness import build, buildtree

        tree = buildtree.ensure_tree(patches_dir=build.default_patches_dir(),
                                     progress=lambda ev: print(f"[mutants] build {ev.step}: {ev.status} "
                                                               f"{ev.detail}".rstrip(), file=sys.stderr))
        print(tree.src)
        return 0
    if args.duration <= 0 or args.period <= 0:
        raise InputError("--duration and --period must be positive seconds.")

    def say(text: str) -> None:
        print(f"[mutants] {text}", file=sys.stderr, flush=True)

    rows, total = run_matrix(catalogue, args.out, duration_s=args.duration, period_s=args.period,
                             unit_tests=not args.no_unit_tests, fresh=args.fresh, baseline=not args.no_baseline,
                             say=say)
    print(markdown(rows, total))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average at the end: {load}\nmatrix: {args.out / 'matrix.md'} and {args.out / 'matrix.json'}")
    return 1 if any(not r.killed for r in rows if r.kind != "-") else 0
