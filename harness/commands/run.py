"""`kist-harness run [SCENARIO]`: the main job (harness.runjob)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("run", help="build, run a private network with KIST and Vanilla arms, replay every "
                       "decision through the model, and write a report")
    p.add_argument("scenario", nargs="?", default="default",
                   help="a scenario shipped with kist-harness (default; variants: the default under more load "
                   "and loss; basic) or a TOML file")
    p.add_argument("--backend", default="auto", choices=("auto", "docker", "local"),
                   help="auto: Docker when the engine runs, else local tor processes")
    p.add_argument("--out", type=Path, default=Path("runs/latest"), help="where the store and the report go")
    p.add_argument("--arms", default="KIST,Vanilla",
                   help="arms to interleave, e.g. KIST,Vanilla or 'k10:Schedulers=KIST;KISTSchedRunInterval=10,KIST'")
    p.add_argument("--period", type=float, default=None, metavar="S",
                   help="seconds per arm period (default: every arm twice, or once if that is needed for the "
                   "longest expected download to fit in one period)")
    p.add_argument("--duration", type=float, default=None, metavar="S",
                   help="traffic seconds per phase (default: the scenario's; a variant's own duration_s wins)")
    p.add_argument("--seed", type=int, default=1, help="seed of the arm order (logged, stored)")
    p.add_argument("--tor", type=Path, default=None, help="use this patched tor instead of building one")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from harness.progress import Steps
    from harness.runjob import STEPS, RunConfig, run

    cfg = RunConfig(scenario=args.scenario, backend=args.backend, out=args.out, arms=args.arms,
                    period_s=args.period, duration_s=args.duration, seed=args.seed, tor=args.tor)
    outcome = run(cfg, Steps(STEPS))
    print(f"runs={outcome.runs} decisions={outcome.decisions} divergences={outcome.divergences} "
          f"downloads={outcome.downloads} queue_cells={outcome.queue_cells} "
          f"queue_mismatches={outcome.queue_mismatches}")
    for phase in outcome.phases:
        print(f"phase {phase}")
    for note in outcome.notes + outcome.phase_notes:
        print(f"note: {note}")
    print(f"timings: {outcome.split}")
    print(f"store: {outcome.store}")
    print(f"report: {outcome.report}")
    return 1 if outcome.divergences or outcome.queue_mismatches else 0
