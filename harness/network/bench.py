"""Benchmark: bring-up of a scenario (default chutney's `basic`) to a working circuit.

    python -m harness.network.bench basic --backend docker --runs 3
    python -m harness.network.bench basic --backend swarm --runs 3   # Swarm services (docs/swarm.md)
    python -m harness.network.bench --links      # the link emulator's capacity instead

Images are built (and keys cached) before timing starts, so the figures are "from built
images". Prints per run: configure (layout, keys, torrcs), launch (processes/containers),
bootstrap (until every node reports 100%), verify (a fetch through every client), total,
and teardown (down: for swarm, with `swarm leave` when the run made the swarm).
Anchor on this machine with chutney and the same tor: about 61 s.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

from harness.config import load_scenario
from harness.errors import HarnessError
from harness.network import lifecycle

FIELDS = ("configure_s", "launch_s", "bootstrap_s", "verify_s")


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if "--links" in args_in:  # the link emulator's capacity (harness.network.linkbench)
        from harness.network import linkbench
        return linkbench.main([a for a in args_in if a != "--links"])
    p = argparse.ArgumentParser(prog="python -m harness.network.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario", nargs="?", default="basic")
    p.add_argument("--backend", choices=("docker", "swarm", "local"), default="local")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--tor", type=Path, help="patched tor binary, if the scenario uses one")
    p.add_argument("--links", action="store_true", help="benchmark the link emulator instead (see linkbench)")
    args = p.parse_args(args_in)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        net = load_scenario(args.scenario)
        if args.backend in ("docker", "swarm"):
            from harness.config import Binary
            from harness.network import images
            images.ensure_node(args.tor if Binary.PATCHED in net.binaries() else None)
        rows = []
        for i in range(args.runs):
            t0 = time.monotonic()
            handle = lifecycle.start(net, args.backend, args.tor)
            total = time.monotonic() - t0
            t1 = time.monotonic()
            lifecycle.teardown(handle)
            row = [handle.timings[f] for f in FIELDS] + [total, time.monotonic() - t1]
            rows.append(row)
            print(f"run {i + 1}: " + "  ".join(f"{f.removesuffix('_s')} {v:5.1f} s" for f, v in
                                               zip((*FIELDS, "total_s", "down_s"), row, strict=True)), flush=True)
    except HarnessError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return exc.exit_code
    med = [statistics.median(col) for col in zip(*rows, strict=True)]
    print(f"median of {len(rows)} ({args.backend}, {net.name}, {len(net.nodes)} tor nodes): "
          + "  ".join(f"{f.removesuffix('_s')} {v:5.1f} s" for f, v in zip((*FIELDS, "total_s", "down_s"), med, strict=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
