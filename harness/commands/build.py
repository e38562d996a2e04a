"""`kist-harness build`: the patched (or stock) tor, built, unit-tested and cached.

Progress goes to stderr; the absolute path of the tor binary is the last line on stdout,
so scripts can do ``TOR=$(kist-harness build | tail -1)``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.build import StepEvent


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("build", help="build tor with the patch series, run its unit tests, cache it")
    p.add_argument("--source", default="debian",
                   help="`debian` (apt-get source tor; default), `debian:PACKAGE`, a release tarball, "
                        "or a git checkout directory")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--patches", type=Path, help="patch series directory (default: the repository's patches/)")
    group.add_argument("--no-patches", action="store_true", help="build unpatched Tor (same flags and tests)")
    p.add_argument("--configure-arg", action="append", default=[], metavar="ARG",
                   help="extra ./configure argument (repeatable; part of the cache key)")
    p.add_argument("--cache-dir", type=Path, help="cache root (default: ~/.cache/kist-harness)")
    p.add_argument("--rebuild", action="store_true", help="build even if the cache has this build")
    p.set_defaults(func=_build)


def _progress(event: StepEvent) -> None:
    if event.status == "start":
        extra = f" {event.detail}" if event.detail else ""
        print(f"[{event.elapsed_s:6.1f} s] {event.step} ...{extra}", file=sys.stderr, flush=True)
    elif event.status == "progress":
        print(f"[{event.elapsed_s:6.1f} s] {event.step}: {event.detail}", file=sys.stderr, flush=True)
    elif event.status == "cached":
        print(f"[{event.elapsed_s:6.1f} s] cached build: {event.detail}", file=sys.stderr, flush=True)
    else:
        extra = f" ({event.detail})" if event.detail else ""
        print(f"[{event.elapsed_s:6.1f} s] {event.step} {event.status}{extra}", file=sys.stderr, flush=True)


def _build(args: argparse.Namespace) -> int:
    from harness import build

    patches = None if args.no_patches else (args.patches or build.default_patches_dir())
    result = build.ensure_built(args.source, patches, _progress, cache_dir=args.cache_dir,
                                configure_args=tuple(args.configure_arg), rebuild=args.rebuild)
    print(f"Tor {result.version} from {result.source}; series {result.series_hash[:12]}; "
          f"cache key {result.cache_key}", file=sys.stderr)
    for s in result.suites:
        print(f"  tests {s.pattern:<22} {s.passed:4d} ok, {s.skipped} skipped ({s.duration_s:.1f} s)",
              file=sys.stderr)
    print(f"tor-gencert: {result.tor_gencert}", file=sys.stderr)
    print(result.tor)
    return 0
