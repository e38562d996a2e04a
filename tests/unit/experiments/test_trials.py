"""The trials table: per-trial medians, their interval over trials, and the paired difference."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from harness.errors import InputError
from harness.experiments import trials
from harness.experiments.claims import KIST, VANILLA, NetworkResult


def _trial(i: int, kist_ttlb: list[float], van_ttlb: list[float], shift: float) -> list[NetworkResult]:
    net = f"trial{i}"
    return [NetworkResult(net, "base", KIST, {"ttlb_320KiB": [v + shift for v in kist_ttlb]},
                          {"goodput_kib_s": 600.0 + shift}),
            NetworkResult(net, "base", VANILLA, {"ttlb_320KiB": [v + shift for v in van_ttlb]},
                          {"goodput_kib_s": 400.0 + shift})]


def test_paired_difference_cancels_what_the_trials_share() -> None:
    # each trial shifts both arms by the same amount (the machine's load that minute): the arms'
    # own intervals are wide, the paired difference is exact
    rs = [r for i, s in enumerate((0.0, 0.5, 1.0, 1.5, 2.0), 1)
          for r in _trial(i, [1.0, 1.6, 2.0], [1.2, 1.9, 2.4], s)]
    rows = {r.label: r for r in trials.table(rs)}
    med = rows["TTLB 320 KiB, median (s)"]
    assert med.kist.k == 5 and med.kist.mean == pytest.approx(1.6 + 1.0)
    assert med.kist.high - med.kist.low > 1.0
    assert med.difference.mean == pytest.approx(-0.3)
    assert med.difference.half_width == pytest.approx(0.0, abs=1e-12)
    assert "KIST lower" in med.cells()[3]
    gp = rows["relay goodput, mean (KiB/s)"]
    assert gp.difference.mean == pytest.approx(200.0) and "KIST higher" in gp.cells()[3]


def test_a_metric_no_trial_measured_says_so() -> None:
    rows = {r.label: r for r in trials.table(_trial(1, [1.0], [1.1], 0.0))}
    kq = rows["kernel queue time, median (ms)"]
    assert kq.kist.k == 0 and kq.cells()[1] == "no data"
    one = rows["TTLB 320 KiB, median (s)"]
    assert one.kist.k == 1 and math.isnan(one.kist.low) and "no interval" in one.cells()[1]
    md = trials.markdown(list(rows.values()), 1)
    assert md.count("\n") == len(trials.ROWS) + 2


def test_a_directory_without_a_store_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"trial 1: .*holds no store\.sqlite"):
        trials.load([tmp_path])
