"""The grid: every cell once, resumable after an interruption, then the claims table."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import load_scenario
from harness.errors import InputError
from harness.experiments import grid
from harness.experiments.claims import KIST, VANILLA, NetworkResult


def _load(cell: grid.Cell, store: Path) -> list[NetworkResult]:
    # KIST's 320 KiB TTLB 0.2 s lower on every network: the base row reads it
    base = 1.0 + 0.1 * cell.seed
    van = [base + 0.01 * i for i in range(11)]
    return [NetworkResult(cell.network, cell.condition, VANILLA, {"ttlb_320KiB": van}),
            NetworkResult(cell.network, cell.condition, KIST, {"ttlb_320KiB": [v - 0.2 + 0.001 * cell.seed
                                                                              for v in van]})]


def test_grid_runs_each_cell_once_and_resumes(tmp_path: Path) -> None:
    cfg = grid.GridConfig(out=tmp_path / "g", networks=3, conditions=("base", "high-load"))
    ran: list[tuple[int, str]] = []

    def run_one(cell: grid.Cell, scenario: Path, run_dir: Path) -> tuple[Path, int, int]:
        net = load_scenario(scenario)          # the cell's scenario is a real, loadable one
        assert net.name == f"sampled-s{cell.seed}-{cell.condition}"
        if cell.seed == 2 and cell.condition == "high-load" and not any(s == 2 for s, _ in ran[3:]):
            ran.append((cell.seed, cell.condition))
            raise KeyboardInterrupt               # cut off in the middle of cell 4
        ran.append((cell.seed, cell.condition))
        return run_dir / "store.sqlite", 0, 100

    with pytest.raises(KeyboardInterrupt):
        grid.run_grid(cfg, run_one, _load, say=lambda m: None)
    assert ran == [(1, "base"), (1, "high-load"), (2, "base"), (2, "high-load")]
    assert not (tmp_path / "g" / "net2" / "high-load" / grid.DONE).exists()
    res = grid.run_grid(cfg, run_one, _load, say=lambda m: None)
    assert ran[4:] == [(2, "high-load"), (3, "base"), (3, "high-load")]   # finished cells not rerun
    assert (res.cells, res.ran, res.skipped) == (6, 3, 3)
    assert res.decisions == 600 and res.divergences == 0
    md = (tmp_path / "g" / "claims.md").read_text()
    assert "k=3" in md and (tmp_path / "g" / "claims.html").is_file()
    assert (tmp_path / "g" / "ttlb_320KiB_base.png").is_file()
    again = grid.run_grid(cfg, run_one, _load, say=lambda m: None)
    assert again.ran == 0 and again.skipped == 6


def test_grid_checks_arguments_first(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--conditions"):
        grid.check(grid.GridConfig(out=tmp_path, conditions=("base", "sunny")))
    with pytest.raises(InputError, match="--networks"):
        grid.check(grid.GridConfig(out=tmp_path, networks=0))
