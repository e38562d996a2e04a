"""``python -m kist_reference.bench``: replay throughput on a synthetic trace.

Builds (untimed) a trace of at least ``--decisions`` decisions with the simulated relay of
:mod:`kist_reference.recorder`, checks it round-trips through JSON lines, then times the
faithful replay of every record. Last line: ``decisions_per_s=N``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from kist_reference.recorder import SimRelay
from kist_reference.replay import replay_run
from kist_reference.trace import RunRecord, from_json, to_json


def build_trace(min_decisions: int, seed: int = 7, sched: str = "KIST") -> tuple[list[RunRecord], int]:
    """Records from a busy simulated relay until they hold ``min_decisions`` decisions."""
    sim = SimRelay(seed, n_channels=24, sched=sched, circuits_per_channel=6, load=2.5)
    records: list[RunRecord] = []
    decisions = 0
    while decisions < min_decisions:
        sim.between_runs()
        if not sim.st.pending.heap:
            continue
        rec = sim.run()
        records.append(rec)
        decisions += replay_run(rec).decisions
    return records, decisions


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kist_reference.bench", description=__doc__)
    ap.add_argument("--decisions", type=int, default=1_000_000)
    ap.add_argument("--sched", default="KIST", choices=("KIST", "KISTLite", "Vanilla"))
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)

    t = time.perf_counter()
    records, expected = build_trace(args.decisions, args.seed, args.sched)
    steps = sum(len(r.steps) for r in records)
    print(f"trace: runs={len(records)} steps={steps} decisions={expected} sched={args.sched} "
          f"(built in {time.perf_counter() - t:.1f}s)")

    t = time.perf_counter()
    lines = [to_json(r) for r in records]
    parsed = [from_json(x) for x in lines]
    parse_s = time.perf_counter() - t
    if parsed != records:
        raise SystemExit("JSON round trip changed the trace")
    print(f"json: {len(lines)} records written and parsed in {parse_s:.2f}s "
          f"({steps / parse_s:,.0f} steps/s)")

    t = time.perf_counter()
    decisions = 0
    divergences = 0
    for rec in parsed:
        res = replay_run(rec)
        decisions += res.decisions
        divergences += res.divergence is not None
    elapsed = time.perf_counter() - t
    if divergences or decisions != expected:
        raise SystemExit(f"replay disagreed with its own trace: {divergences} divergences")
    print(f"replay: decisions={decisions} seconds={elapsed:.2f} divergences=0")
    print(f"decisions_per_s={decisions / elapsed:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
