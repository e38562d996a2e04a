"""The paper's grid: k independently sampled networks x the five conditions, KIST and
Vanilla interleaved on the same relays in every cell; resumable; then the claims table.

Each cell (network seed, condition) is one main job (harness.run.job) on a scenario the
sampler wrote for that seed and condition, in ``OUT/net<seed>/<condition>/``. A cell is done
when its ``done.json`` exists (written last, atomically): a rerun after an interruption
skips finished cells and reruns only the one that was cut off. The same seed samples the
same relays under every condition, so the claims' trends can be paired by network.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.errors import InputError
from harness.experiments import claims, gridreport, population, sample
from harness.experiments.claims import NetworkResult

log = logging.getLogger(__name__)
DONE = gridreport.DONE


@dataclass(frozen=True)
class GridConfig:
    out: Path
    networks: int = 5
    conditions: tuple[str, ...] = claims.ALL_CONDITIONS
    first_seed: int = 1
    network_scale: float = 0.002
    loops_per_process: int = 25
    duration_s: float = 60.0
    # downloads still in flight this long after traffic ends are cut off, as a Shadow or
    # tornettools experiment ends at its stop time (the main job alone waits 60 s for them)
    drain_s: float = 15.0
    pause_scale: float = 0.1
    links: str = "paper"
    backend: str = "local"
    arms: str = "KIST,Vanilla"
    tor: Path | None = None


@dataclass(frozen=True)
class Cell:
    seed: int
    condition: str
    path: Path

    @property
    def network(self) -> str:
        return f"net{self.seed}"


@dataclass
class GridOutcome:
    cells: int = 0
    ran: int = 0
    skipped: int = 0
    seconds: float = 0.0
    per_cell_s: list[float] = field(default_factory=list)
    verdicts: list[claims.Verdict] = field(default_factory=list)
    divergences: int = 0
    decisions: int = 0
    table: Path | None = None
    report: Path | None = None


def check(cfg: GridConfig) -> None:
    """Every argument before anything runs or is written."""
    if cfg.networks < 1:
        raise InputError(f"--networks must be >= 1, got {cfg.networks} (the paper's grid wants >= 5)")
    bad = [c for c in cfg.conditions if c not in sample.CONDITIONS]
    if bad or not cfg.conditions:
        raise InputError(f"--conditions: unknown {', '.join(bad) or '(none given)'}; choose from "
                         f"{', '.join(sample.CONDITIONS)}")
    if not 0 <= cfg.drain_s <= 600:
        raise InputError(f"--drain must be 0..600 s, got {cfg.drain_s}")
    if cfg.out.exists() and not cfg.out.is_dir():
        raise InputError(f"--out {cfg.out} is a file; give a directory for the grid")


def cells(cfg: GridConfig) -> list[Cell]:
    """Networks interleaved with conditions (net1 base, net1 low-load, ...): a cut-off grid
    still has whole networks across conditions, which is what pairing needs."""
    return [Cell(s, c, cfg.out / f"net{s}" / c) for s in range(cfg.first_seed, cfg.first_seed + cfg.networks)
            for c in cfg.conditions]


def spec_for(cfg: GridConfig, cell: Cell) -> sample.SampleSpec:
    return sample.SampleSpec(seed=cell.seed, network_scale=cfg.network_scale, condition=cell.condition,
                             loops_per_process=cfg.loops_per_process, duration_s=cfg.duration_s,
                             pause_scale=cfg.pause_scale, links=cfg.links)


# run_one(cell, scenario, run_dir) -> (store path, divergences, decisions)
RunOne = Callable[[Cell, Path, Path], tuple[Path, int, int]]
# load(cell, store) -> that cell's results (a Cell while the grid runs, a DoneCell when read back)
Load = Callable[[Cell | gridreport.DoneCell, Path], list[NetworkResult]]


def run_grid(cfg: GridConfig, run_one: RunOne, load: Load, say: Callable[[str], None] = log.info) -> GridOutcome:
    check(cfg)
    pop = population.BUNDLED
    todo = cells(cfg)
    out = GridOutcome(cells=len(todo))
    t0 = time.monotonic()
    for i, cell in enumerate(todo, 1):
        done = cell.path / DONE
        if done.is_file():
            out.skipped += 1
            continue
        cell.path.mkdir(parents=True, exist_ok=True)
        run_dir = cell.path / "run"   # a cut-off attempt's run dir is replaced by the job (harness.outdir)
        spec = spec_for(cfg, cell)
        scenario = cell.path / "scenario.toml"
        scenario.write_text(sample.header(pop, spec) + sample.to_toml(sample.sample(pop, spec)))
        say(f"grid: cell {i}/{len(todo)}: {cell.network} {cell.condition}")
        c0 = time.monotonic()
        store, divergences, decisions = run_one(cell, scenario, run_dir)
        secs = time.monotonic() - c0
        out.ran += 1
        out.per_cell_s.append(secs)
        tmp = cell.path / f"{DONE}.tmp"
        tmp.write_text(json.dumps({"seed": cell.seed, "condition": cell.condition, "store": str(store),
                                   "divergences": divergences, "decisions": decisions, "seconds": round(secs, 1),
                                   "spec": {k: v for k, v in asdict(spec).items() if k != "extra"}}, indent=1))
        os.replace(tmp, done)
    out.seconds = time.monotonic() - t0
    mine = {(c.seed, c.condition) for c in todo}
    cells_done = [c for c in gridreport.finished_cells(cfg.out) if (c.seed, c.condition) in mine]
    out.divergences = sum(c.divergences for c in cells_done)
    out.decisions = sum(c.decisions for c in cells_done)
    out.report, out.verdicts = gridreport.report_grid(cfg.out, load, cells_done)
    out.table = cfg.out / "claims.md"
    return out


def main_job_runner(cfg: GridConfig) -> RunOne:
    """run_one through the main job (a real network per cell)."""
    from harness.progress import Steps
    from harness.run.job import STEPS, RunConfig, run

    def run_one(cell: Cell, scenario: Path, run_dir: Path) -> tuple[Path, int, int]:
        outcome = run(RunConfig(scenario=str(scenario), backend=cfg.backend, out=run_dir, arms=cfg.arms,
                                seed=cell.seed, tor=cfg.tor, drain_s=cfg.drain_s), Steps(STEPS))
        return outcome.store, outcome.divergences, outcome.decisions

    return run_one


def store_loader(cell: Cell | gridreport.DoneCell, store: Path) -> list[NetworkResult]:
    from harness.experiments.results import from_report
    from harness.report.read import read_store

    return from_report(read_store(store), cell.network, condition=cell.condition)
