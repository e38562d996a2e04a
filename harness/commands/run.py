"""`kist-harness run [SCENARIO]`: the main job (harness.run.job)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("run", help="build, run a private network with KIST and Vanilla arms, replay every "
                       "decision through the model, and write a report")
    p.add_argument("scenario", nargs="?", default="default",
                   help="a scenario shipped with kist-harness (default; variants: the default under more load "
                   "and loss; basic), a TOML file, or 'paper': the paper's grid of sampled networks x "
                   "conditions (harness.experiments.grid)")
    p.add_argument("--backend", default="auto", choices=("auto", "docker", "swarm", "local"),
                   help="auto: Docker when the engine runs, else local tor processes; swarm: Docker Swarm "
                   "services (a swarm is made for the run if the engine is in none, and left afterwards)")
    p.add_argument("--out", type=Path, default=Path("runs/latest"), help="where the store and the report go")
    p.add_argument("--arms", default="KIST,Vanilla",
                   help="arms to interleave, e.g. KIST,Vanilla or 'k10:Schedulers=KIST;KISTSchedRunInterval=10,KIST'")
    p.add_argument("--period", type=float, default=None, metavar="S",
                   help="seconds per arm period (default: every arm twice, or once if that is needed for the "
                   "longest expected download to fit in one period)")
    p.add_argument("--duration", type=float, default=None, metavar="S",
                   help="traffic seconds per phase (default: the scenario's; a variant's own duration_s wins)")
    p.add_argument("--seed", type=int, default=1, help="seed of the arm order (logged, stored)")
    p.add_argument("--no-links", action="store_true",
                   help="leave the scenario's [links] out: every path at LAN speed (a baseline to compare with)")
    p.add_argument("--tor", type=Path, default=None, help="use this patched tor instead of building one")
    p.add_argument("--coverage-data", type=Path, default=None, metavar="FILE",
                   help="coverage.py data file the model's branch coverage accumulates in across runs "
                   "(default: model-coverage.sqlite beside the store)")
    b = p.add_argument_group("bring your own scheduler (docs/byo-scheduler.md)")
    b.add_argument("--patches", type=Path, default=None, metavar="DIR",
                   help="a quilt series of your own Tor patches (DIR/series + DEP-3 .patch files), built on top "
                   "of the project's patches/series, which emits the run records the differential replays")
    b.add_argument("--policy", default=None, metavar="MODULE:CLASS",
                   help="replay the runs through your subclass of kist_reference.scheduler.KistPolicy (or "
                   "KistLitePolicy, VanillaPolicy) instead of the faithful model; MODULE is importable from "
                   "PYTHONPATH or a path to a .py file. Recorded in the store, so `kist-harness report` uses it too")
    g = p.add_argument_group("run paper (the grid)")
    g.add_argument("--networks", type=int, default=5, help="sampled networks per condition (default 5)")
    g.add_argument("--conditions", default="base,low-load,high-load,no-loss,high-loss",
                   help="comma-separated conditions of the grid")
    g.add_argument("--network-scale", type=float, default=0.002, help="fraction of the population per network")
    g.add_argument("--drain", type=float, default=15.0, metavar="S",
                   help="seconds a cell waits for downloads in flight when its traffic ends (default 15; "
                   "the rest are cut off, as at a Shadow experiment's stop time)")
    g.add_argument("--links", dest="grid_links", default=None, choices=("paper", "none"),
                   help="paper (default): the paper's latency/loss model on every path (the delay line); "
                   "none: LAN links (as --no-links)")
    p.set_defaults(func=_run)


def grid_links(args: argparse.Namespace) -> str:
    """The link model asked for: ``--links none`` and ``--no-links`` both mean LAN links.

    Why two flags: ``--no-links`` drops a scenario's own ``[links]`` table, ``--links`` picks
    what the grid's sampled networks get; they used to share one destination, so a plain
    ``run paper`` handed the grid ``True`` instead of ``"paper"``.
    """
    if args.no_links and args.grid_links == "paper":
        from harness.errors import InputError

        raise InputError("run: --no-links and --links paper contradict each other; give one of them.")
    return "none" if args.no_links else (args.grid_links or "paper")


def _paper(args: argparse.Namespace) -> int:
    from harness.errors import InputError
    from harness.experiments import grid

    if args.patches is not None or args.policy is not None:
        raise InputError("run paper with --patches/--policy: the grid does not take them yet; run one scenario "
                         "(kist-harness run default --patches DIR --policy MODULE:CLASS).")

    out = args.out if args.out != Path("runs/latest") else Path("runs/paper")
    cfg = grid.GridConfig(out=out, networks=args.networks, conditions=tuple(c.strip() for c in
                          args.conditions.split(",") if c.strip()), first_seed=args.seed,
                          network_scale=args.network_scale, backend="local" if args.backend == "auto" else args.backend,
                          arms=args.arms, tor=args.tor, links=grid_links(args), drain_s=args.drain, **({"duration_s": args.duration} if args.duration else {}))
    res = grid.run_grid(cfg, grid.main_job_runner(cfg), grid.store_loader,
                        say=lambda m: print(m, flush=True))
    print(f"grid: {res.cells} cells ({res.ran} run, {res.skipped} already done) in {res.seconds:.0f} s"
          + (f", {sum(res.per_cell_s) / len(res.per_cell_s):.0f} s per cell" if res.per_cell_s else ""))
    print(f"differential: {res.decisions} decisions, {res.divergences} divergences")
    print(res.table.read_text() if res.table else "")
    print(f"claims: {res.table} (and claims.html, ttlb_320KiB_base.png beside it)")
    if res.report is not None:
        print(f"report: {res.report / 'index.html'} (summary.md beside it)")
    return 1 if res.divergences else 0


def _run(args: argparse.Namespace) -> int:
    if args.scenario == "paper":
        return _paper(args)
    from harness.progress import Steps
    from harness.run.job import STEPS, RunConfig, run

    cfg = RunConfig(scenario=args.scenario, backend=args.backend, out=args.out, arms=args.arms,
                    period_s=args.period, duration_s=args.duration, seed=args.seed, tor=args.tor,
                    coverage_data=args.coverage_data, links=grid_links(args) != "none", patches=args.patches,
                    policy=args.policy)
    outcome = run(cfg, Steps(STEPS))
    print(f"runs={outcome.runs} decisions={outcome.decisions} divergences={outcome.divergences} "
          f"downloads={outcome.downloads} queue_cells={outcome.queue_cells} "
          f"queue_mismatches={outcome.queue_mismatches} {outcome.coverage}".rstrip())
    for phase in outcome.phases:
        print(f"phase {phase}")
    for note in outcome.notes + outcome.phase_notes:
        print(f"note: {note}")
    print(f"timings: {outcome.split}")
    print(f"store: {outcome.store}")
    print(f"report: {outcome.report}")
    return 1 if outcome.divergences or outcome.queue_mismatches else 0
