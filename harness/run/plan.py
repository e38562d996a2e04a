"""The main job's phases, planned once before anything starts: one PhasePlan per phase.

The base condition, then each ``[[variants]]`` entry: which can run on this backend (or
why not, said at once), its run id in the store, traffic time, arm period (chosen against
the longest expected download, with a warning when it cannot fit), seeded arm schedule
and offered load. Nothing here touches the network, so the plan is unit-tested alone.
"""

from __future__ import annotations

from collections.abc import Callable

from harness.config import Network
from harness.control.abtest import Arm
from harness.network.shaping import KernelShaping
from harness.run import variants
from harness.run.phase import HeldSchedule, PhasePlan, choose_period, expected_longest_s


def plan_phases(net: Network, backend: str, *, run_id: str, arms: tuple[Arm, ...], duration_s: float,
                period_s: float | None, seed: int, kernel: Callable[[], KernelShaping] | None = None) -> list[PhasePlan]:
    """Every phase of the run, in order. The base phase has the run's id; a variant's is
    ``<run id>.<variant>``; phase i is seeded ``seed + i``."""
    plans = []
    for i, phase in enumerate(variants.phases(net, backend, kernel)):
        v = phase.variant
        loops, pause_factor = variants.client_load(v.load_scale)
        duration = v.duration_s or duration_s
        period, warning = choose_period(period_s, duration, len(arms), expected_longest_s(net, loops))
        schedule = None if phase.skipped else HeldSchedule(arms, period, seed + i, duration)
        plans.append(PhasePlan(v, run_id if i == 0 else f"{run_id}.{v.name}", duration, period, seed + i,
                               loops, pause_factor, warning, phase.skipped, schedule))
    return plans
