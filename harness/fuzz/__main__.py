"""``python -m harness.fuzz [--inputs N] [--seed S] [--target NAME]``: fuzz every parser, print figures.

Prints one line per target (inputs, accepted, refused with a documented error, escapes,
inputs/s), then each distinct escape (exception type, where it was raised, one input
that caused it), and last ``inputs=N rate=R/s escapes=E``. Exit 1 when anything escaped.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from harness.fuzz.targets import ROOT, Target, all_targets

WEIGHTS = {"events": 0.40, "records": 0.30, "scenario": 0.12, "inventory": 0.12, "store": 0.06}


@dataclass
class Tally:
    inputs: int = 0
    accepted: int = 0
    refused: int = 0
    seconds: float = 0.0
    escapes: dict[tuple[str, str], tuple[int, str]] = field(default_factory=dict)  # (type, where) -> (n, example)


def _where(exc: BaseException) -> str:
    """The innermost frame in the project's own code: where the escape has to be fixed."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if str(ROOT) in f.filename and "/fuzz/" not in f.filename]
    f = (ours or frames)[-1]
    return f"{Path(f.filename).relative_to(ROOT) if str(ROOT) in f.filename else f.filename}:{f.lineno}"


def run_target(target: Target, n: int, rng: random.Random, tally: Tally) -> None:
    start = time.perf_counter()
    for i in range(n):
        tally.inputs += 1
        try:
            ok = target.feed(rng)
        except target.documented:
            tally.refused += 1
            continue
        except Exception as exc:  # noqa: BLE001 - counting these is the point
            key = (type(exc).__name__, _where(exc))
            count, example = tally.escapes.get(key, (0, ""))
            if not example:  # the same --seed reproduces input #i
                example = f"{exc!s:.200} (input #{i} of {target.name})"
            tally.escapes[key] = (count + 1, example)
            continue
        tally.accepted += ok
        tally.refused += not ok
    tally.seconds += time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.fuzz", description=__doc__.splitlines()[0])
    p.add_argument("--inputs", type=int, default=100_000, help="inputs in all (default 100000)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1); a seed repeats a run")
    p.add_argument("--target", action="append", choices=sorted(WEIGHTS), help="only these targets")
    args = p.parse_args(argv)
    logging.disable(logging.CRITICAL)  # the store's warnings about odd records are expected here
    names = args.target or list(WEIGHTS)
    share = sum(WEIGHTS[n] for n in names)
    tallies: dict[str, Tally] = {}
    with tempfile.TemporaryDirectory(prefix="kist-fuzz-") as tmp:
        targets = {t.name: t for t in all_targets(Path(tmp))}
        for name in names:
            rng = random.Random(f"{args.seed}/{name}")
            tallies[name] = Tally()
            run_target(targets[name], round(args.inputs * WEIGHTS[name] / share), rng, tallies[name])
            t = tallies[name]
            print(f"{name:10} inputs={t.inputs:7} accepted={t.accepted:7} refused={t.refused:7} "
                  f"escapes={sum(n for n, _ in t.escapes.values()):5} rate={t.inputs / t.seconds:8.0f}/s"
                  f"  ({targets[name].what})", flush=True)
    for name, t in tallies.items():
        for (kind, where), (n, example) in sorted(t.escapes.items()):
            print(f"ESCAPE {name}: {kind} at {where} x{n}: {example}")
    total = sum(t.inputs for t in tallies.values())
    seconds = sum(t.seconds for t in tallies.values())
    escapes = sum(n for t in tallies.values() for n, _ in t.escapes.values())
    print(f"inputs={total} seconds={seconds:.1f} rate={total / seconds:.0f}/s escapes={escapes} "
          f"distinct={sum(len(t.escapes) for t in tallies.values())} seed={args.seed}")
    return 1 if escapes else 0


if __name__ == "__main__":
    sys.exit(main())
