"""``python -m harness.faults [--kills N] [--only NAME ...]``: inject the faults, print the figures.

Needs root (tmpfs, iptables) and the patched build (`kist-harness build`; cached). One
local network (default scenario, patched `kist` relay, its clients downloading) serves
every fault in turn. Exit 0 when every goal is met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

FAULTS = ("tor-kill", "collector-kill", "disk-full", "control-flap")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.faults", description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=10, help="kills / closures per fault (default 10)")
    p.add_argument("--only", action="append", choices=FAULTS, help="only these faults")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S")
    import stem.util.log

    stem.util.log.get_logger().setLevel(logging.WARNING)
    from harness.errors import HarnessError
    from harness.faults import collector_kill, common, control_flap, disk_full, tor_kill

    chosen = args.only or list(FAULTS)
    figures = []
    t0 = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="kist-faults-") as tmp, common.lab(Path(tmp)) as lab:
            print(f"network up in {time.monotonic() - t0:.0f} s; relay under test {lab.relay} "
                  f"({lab.node.control_host}:{lab.node.control_port}), tor {lab.tor}", flush=True)
            for name in chosen:
                started = time.monotonic()
                if name == "tor-kill":
                    fig = tor_kill.run(lab, args.kills)
                elif name == "collector-kill":
                    fig = collector_kill.run(lab, args.kills)
                elif name == "disk-full":
                    fig = disk_full.run(lab)
                else:
                    fig = control_flap.run(lab, args.kills)
                fig.values["wall_s"] = f"{time.monotonic() - started:.0f}"
                figures.append(fig)
                print(fig.line(), flush=True)
    except HarnessError as exc:
        print(f"python -m harness.faults: {exc}", file=sys.stderr)
        return exc.exit_code
    met = sum(f.ok for f in figures)
    print(f"faults={len(figures)} goals_met={met} seconds={time.monotonic() - t0:.0f}")
    return 0 if met == len(figures) else 1


if __name__ == "__main__":
    sys.exit(main())
