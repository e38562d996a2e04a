"""`kist-harness export STORE --out DIR`: a store as OnionPerf analysis JSON and oniontrace logs."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("export", help="write a store's downloads as OnionPerf analysis JSON (format 4.0) and its "
                       "BW/CIRC events as oniontrace logs, per arm, for OnionPerf's and tornettools' tooling")
    p.add_argument("store", type=Path, help="a store written by `kist-harness run` or `kist-harness collect`")
    p.add_argument("--out", type=Path, required=True, help="directory to write (one subdirectory per arm)")
    p.add_argument("--tornettools-names", action="store_true",
                   help="name hosts perfclient<N>exit and relay<FP>, the names tornettools' parse keeps")
    p.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    from harness.errors import InputError

    if not args.store.is_file():
        raise InputError(f"store {args.store}: no such file; give the store.sqlite of a run or the --out of "
                         "`kist-harness collect`.")
    from harness.store.toolformats import export_dir

    print(export_dir(args.store, args.out, "kist-harness export", tornettools_names=args.tornettools_names))
    return 0
