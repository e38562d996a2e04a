"""The overhead benchmark's arithmetic: t quantiles, intervals, paired overheads, verdicts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.bench import overhead, tcpinfo
from harness.bench.dut import CpuTime, cpu_time
from harness.errors import InputError
from harness.experiments import stats


@pytest.mark.parametrize(("df", "expected"), [(1, 12.706), (4, 2.776), (9, 2.262), (30, 2.042)])
def test_t_quantile_matches_tables(df: int, expected: float) -> None:
    assert stats.t_factor(df + 1) == pytest.approx(expected, abs=1e-3)   # the quantile the benchmark uses


def test_t_interval_of_known_values() -> None:
    iv = stats.mean_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    assert iv.mean == 3.0
    # s = sqrt(2.5), t(0.975, 4) = 2.776
    assert iv.half_width == pytest.approx(2.776 * (2.5 ** 0.5) / (5 ** 0.5), rel=1e-3)
    assert stats.mean_interval([7.0]).k == 1


def _sample(arm: str, cycle: int, cpu_s: float, wall_s: float = 10.0) -> overhead.Sample:
    return overhead.Sample(arm, cycle, 40_000_000, wall_s, CpuTime(int(cpu_s * 1e9), int(cpu_s * 100)))


def _arms() -> list[overhead.Arm]:
    return [overhead.Arm("A", "unpatched", Path("/a")), overhead.Arm("B", "patched", Path("/b")),
            overhead.Arm("C", "all events", Path("/b"), overhead.EVENTS)]


def test_summary_pairs_by_cycle_and_judges_the_goals() -> None:
    samples = []
    for cycle, a in enumerate((0.40, 0.44, 0.38, 0.42, 0.41), 1):  # drift between cycles
        samples += [_sample("A", cycle, a), _sample("B", cycle, a * 1.001), _sample("C", cycle, a * 1.30)]
    lines = overhead.summarize(_arms(), samples)
    b_line = next(line for line in lines if line.startswith("overhead B"))
    c_line = next(line for line in lines if line.startswith("overhead C"))
    assert "+0.1%" in b_line and b_line.endswith("met")  # pairing cancels the drift
    assert "+30.0%" in c_line and c_line.endswith("MISSED")


def test_summary_says_not_shown_when_the_interval_crosses_the_goal() -> None:
    samples = []
    for cycle, (a, b) in enumerate(((0.40, 0.39), (0.40, 0.42), (0.40, 0.40)), 1):
        samples += [_sample("A", cycle, a), _sample("B", cycle, b), _sample("C", cycle, a)]
    b_line = next(line for line in overhead.summarize(_arms(), samples) if line.startswith("overhead B"))
    assert b_line.endswith("not shown (the interval crosses it)")


def test_cpu_time_of_this_process_grows() -> None:
    before = cpu_time(os.getpid())
    sum(i * i for i in range(300_000))
    spent = cpu_time(os.getpid()) - before
    assert spent.sched_ns > 0 and spent.seconds < 5


def test_socket_counts_are_checked() -> None:
    assert tcpinfo._counts("10,100") == [10, 100]
    for bad in ("", "ten", "0", "10,99999"):
        with pytest.raises(InputError, match="--sockets"):
            tcpinfo._counts(bad)


@pytest.mark.skipif(not (os.path.exists("/usr/bin/cc") or os.path.exists("/usr/bin/gcc")), reason="no C compiler")
def test_floor_loop_compiles_and_reads_real_sockets(tmp_path: Path) -> None:
    exe = tcpinfo.compile_floor(tmp_path)
    f = tcpinfo.measure(exe, 3, 5, 0)
    assert (f.sockets, f.condition, f.passes) == (3, "hot", 5)
    assert 0 < f.q1_us <= f.median_us <= f.q3_us
