"""`kist-harness host setup`: packages, deb-src and the Docker engine."""

from __future__ import annotations

import argparse

from harness import host


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("host", help="prepare this machine (packages, deb-src, dockerd)")
    hsub = p.add_subparsers(dest="host_command", required=True)
    s = hsub.add_parser("setup", help="install what is missing and start dockerd (root)")
    s.add_argument("--parts", default=",".join(host.PACKAGES),
                   help=f"comma-separated subset of: {', '.join(host.PACKAGES)}")
    s.set_defaults(func=_setup)


def _setup(args: argparse.Namespace) -> int:
    parts = tuple(p.strip() for p in args.parts.split(",") if p.strip())
    done = host.setup(parts)
    for line in done or ["host already set up"]:
        print(line)
    return 0
