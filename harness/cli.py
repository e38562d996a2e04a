"""The `kist-harness` command: the only place that prints results or exits.

Each subcommand lives in ``harness.commands.<name>`` with ``register(subparsers)``;
modules import their heavy dependencies (docker, paramiko, matplotlib) inside the
functions that need them, so ``kist-harness model replay`` starts in milliseconds.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from harness.errors import HarnessError
from harness.signals import Stopped, exit_code_of, stop_on_signals

COMMANDS = ("model", "host", "build", "net", "collect", "deploy", "run", "report", "export", "generate",
            "mutants")

log = logging.getLogger("harness")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kist-harness",
        description="Check that a Tor relay's socket scheduler does what the model says, "
        "and measure what it does to latency and throughput.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"harness.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"harness.commands.{name}":
                continue  # not built yet
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2) if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr)
    try:
        with stop_on_signals() as stop:
            try:
                return int(args.func(args) or 0)
            except KeyboardInterrupt as exc:
                # a signal that came while a cleanup was already under way was only said
                raise stop.stopping or exc from None
    except HarnessError as exc:
        print(f"kist-harness {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        what = f"interrupted by {exc.name}" if isinstance(exc, Stopped) else "interrupted"
        where = f" in step {exc.step}" if isinstance(exc, Stopped) and exc.step else ""
        print(f"kist-harness {args.command}: {what}{where}; cleaned up what was started",
              file=sys.stderr)
        return exit_code_of(exc)
    except BrokenPipeError:
        # `kist-harness ... | head`: the reader went away; that is not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
