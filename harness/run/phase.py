"""One traffic phase of `kist-harness run`: collectors on every patched relay, download
loops on every client, arms interleaved network-wide, downloads stored with their arm.

Arms are applied to every patched relay at once, in interleaved periods with a seeded
order (harness.control.abtest), so a download is attributed to the arm in force when it
started and ended; a download that straddles a switch is stored as ``straddle`` and not
attributed. The period is chosen against the longest expected download, so bulk
downloads fit in one period, and the run says how many did not.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.config import Binary, Network, Profile, Variant
from harness.control.abtest import Arm, Schedule, Slot
from harness.errors import HarnessError, InputError, StepError
from harness.network.ready import node_died_message
from harness.network.running import RunningNetwork
from harness.store.db import Store
from harness.store.records import (
    KIST_KQTIME,
    KIST_QTIME,
    STRADDLE,
    Context,
    Kind,
    Record,
)
from harness.store.typed import VariantPlan
from harness.traffic import clients
from harness.traffic.clients import Download

log = logging.getLogger(__name__)

MIN_PERIOD_S = 5.0
DRAIN_S = 60.0  # a download in flight when traffic time ends may finish this late
QUEUE_EVENTS = (KIST_QTIME, KIST_KQTIME)  # Tor and kernel queue time (docs/control-events.md)


class HeldSchedule(Schedule):
    """A seeded arm schedule that keeps the phase's last arm after traffic time ends.

    Clients start no download after duration_s, but the ones in flight finish then: held,
    they finish under the arm they started in and stay attributed, instead of straddling
    into the next block's arm or the relays' restored settings.
    """

    def __init__(self, arms: tuple[Arm, ...], period_s: float, seed: int, duration_s: float) -> None:
        super().__init__(arms, period_s, seed)
        self.duration_s = duration_s
        for block in range(int(duration_s // (period_s * len(arms))) + 2):
            self.order(block)  # drawn now: the collector threads share the schedule

    def slot_at(self, elapsed: float) -> Slot:
        return super().slot_at(min(elapsed, self.duration_s - 1e-6))


@dataclass(frozen=True)
class PhasePlan:
    """Everything one traffic phase is, decided before the network starts (harness.run.plan):
    its condition, its run id in the store, traffic time, arm schedule and offered load.

    It makes its own ``variant`` record (``plan_record``); ``run_phase`` runs it and the
    phase's results make the second."""

    variant: Variant
    run_id: str
    duration_s: float
    period_s: float
    seed: int
    loops: int = 1           # parallel download loops per client
    pause_factor: float = 1.0
    period_warning: str = ""
    skipped: str = ""        # why it cannot run here; empty when it runs
    schedule: HeldSchedule | None = None  # the seeded arm schedule; None when skipped

    @property
    def label(self) -> str:
        """The variant's name, for progress lines and the results directory."""
        return self.variant.name

    def plan_record(self, ts: float) -> Record:
        v = self.variant
        return VariantPlan(v.name, v.describe(), v.load_scale, self.loops, self.pause_factor,
                           asdict(v.client_shaping), self.duration_s, self.period_s, self.period_warning,
                           self.seed, self.skipped).record(ts)


@dataclass(frozen=True)
class PhaseShared:
    """What every phase of one run shares: the network, the scenario, where results go."""

    handle: RunningNetwork
    net: Network
    store_path: Path
    out: Path               # the run's output directory (downloads/<phase>/ under it)
    patch_hash: str
    drain_s: float = DRAIN_S  # how long downloads in flight at traffic's end may take (harness.mutants: less)
    may_die: frozenset[str] = frozenset()  # nodes a fault plan kills on purpose (harness.checks.edge)


@dataclass(frozen=True)
class PhaseResult:
    downloads: int
    straddled: int
    start_wall: float
    end_wall: float
    per_arm: dict[str, int]  # attributed downloads per arm
    note: str = ""           # non-empty when downloads ran across arm switches


def expected_longest_s(net: Network, loops: int = 1) -> tuple[int, float] | None:
    """(largest download size, seconds it takes at its share of the slowest rate set), or None.

    A relay under test with bandwidth_rate_kib is shared by every download loop whose
    client is pinned through it (or not pinned at all); a client link with rate_mbit by
    its own loops. None when the scenario sets no rate (then only the measured check says).
    On the default scenario this predicts 10 s for 5 MiB (measured: median 9.3 s) and 20 s
    at load x2 (measured: 22.7 s).
    """
    from harness.traffic.clients import PROFILES

    active = [c for c in net.clients if c.profile is not Profile.NONE]
    sizes = [s for c in active for s in PROFILES[c.profile.value].sizes]
    shares = []
    for r in net.relays:
        if r.binary is Binary.PATCHED and r.bandwidth_rate_kib:
            users = [c for c in active if not (c.entry_nodes or c.middle_nodes or c.exit_nodes)
                     or r.name in (*c.entry_nodes, *c.middle_nodes, *c.exit_nodes)]
            shares.append(r.bandwidth_rate_kib * 1024.0 / max(1, len(users) * loops))
    shares += [c.shaping.rate_mbit * 1e6 / 8 / loops for c in active if c.shaping.rate_mbit]
    if not sizes or not shares:
        return None
    biggest = int(max(sizes) * net.traffic.size_scale)
    return biggest, biggest / min(shares)


def choose_period(explicit: float | None, duration_s: float, n_arms: int,
                  longest: tuple[int, float] | None) -> tuple[float, str]:
    """The per-arm period and a warning (empty if none).

    Default: every arm twice (traffic time / (2 * arms)) when that is at least twice the
    longest expected download, else every arm once (traffic time / arms): fewer switches,
    but downloads that fit in one arm. Whole blocks keep every arm's share of time equal.
    """
    need = 2 * longest[1] if longest else 0.0
    what = f"{_size_name(longest[0])} takes ~{longest[1]:.0f} s at its share of the slowest rate" if longest else ""
    if explicit is not None:
        if explicit < need:
            return explicit, (f"--period {explicit:g} s is shorter than twice the longest expected download "
                              f"({what}): many of those downloads will run across an arm switch and not be "
                              f"attributed to an arm; pass --period {need:.0f} or more")
        return explicit, ""
    for blocks in (2, 1):
        period = duration_s / (blocks * n_arms)
        if period >= max(need, MIN_PERIOD_S):
            return period, ""
    return max(MIN_PERIOD_S, duration_s / n_arms), (
        f"traffic time {duration_s:g} s gives each of {n_arms} arms {duration_s / n_arms:.0f} s, less than twice "
        f"the longest expected download ({what}); pass --duration {need * n_arms:.0f} or more (or a variant's "
        "duration_s)")


def _size_name(size: int) -> str:
    return f"{size / (1 << 20):g} MiB" if size >= 1 << 20 else f"{size / 1024:g} KiB"


def run_phase(shared: PhaseShared, plan: PhasePlan, say: Callable[[str], None]) -> PhaseResult:
    """Collect from every patched relay and download from every client for plan.duration_s.

    Every download is stored with its arm, also when a node died mid-phase (then the phase
    raises StepError naming it, after storing what was collected)."""
    from harness.control.auth import Credentials
    from harness.control.collector import CollectConfig, Collector
    from harness.control.transport import TcpTransport
    from harness.traffic import driver

    handle, net = shared.handle, shared.net
    schedule = plan.schedule
    if schedule is None:
        raise StepError(f"phase {plan.label} was planned as skipped: {plan.skipped}")
    relays = [n for n in handle.relays if n.binary is Binary.PATCHED]
    if not relays:
        raise InputError(f"scenario {net.source}: no relay runs the patched tor, so there is nothing to "
                         "collect or replay; set binary = \"patched\" on the relays under test.")
    if not handle.servers or not handle.clients:
        raise InputError(f"scenario {net.source}: needs at least one file server and one client for traffic.")
    collectors: list[tuple[Collector, threading.Thread, Store]] = []
    errors: list[BaseException] = []
    # an upper bound: the collectors are stopped once the last download in flight is done. The
    # queue-time events are opt-in (their volume grows with traffic): the run's checks need them.
    cfg = CollectConfig(run_id=plan.run_id, duration_s=plan.duration_s + shared.drain_s + 10.0,
                        patch_hash=shared.patch_hash[:16], extra_events=QUEUE_EVENTS)

    def guarded(fn: Callable[[], object]) -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    results = shared.out / "downloads" / plan.label
    results.mkdir(parents=True)
    try:
        for node in relays:
            store = Store(shared.store_path)
            col = Collector(TcpTransport(node.control_host, node.control_port),
                            Credentials(cookie_path=node.cookie_path), store, cfg, schedule=schedule)
            t = threading.Thread(target=guarded, args=(col.run,), name=f"collect-{node.name}", daemon=True)
            collectors.append((col, t, store))
        start_wall = time.time()
        for _, t, _ in collectors:
            t.start()
        # a client's own loops (scenario `loops`) times the variant's load loops
        loops = [driver.ClientLoop(node, _profile_of(net, node.name), results / f"{node.name}-{k}.jsonl",
                                   seed=1 + i + 100 * k)
                 for i, node in enumerate(handle.clients) for k in range(plan.loops * _loops_of(net, node.name))]

        def progress() -> None:
            p = collectors[0][0].progress
            done = sum(len(clients.read_results(f)) for f in results.glob("*.jsonl"))
            say(f"{plan.label}: {time.time() - start_wall:5.0f} s, arm {p.arm}: {done} downloads, "
                f"{sum(c.progress.stored for c, _, _ in collectors)} records stored, "
                f"{sum(c.progress.gaps for c, _, _ in collectors)} gaps")

        driven = driver.drive(handle, loops, net.traffic, duration_s=plan.duration_s,
                              pause_factor=plan.pause_factor, wait_s=plan.duration_s + shared.drain_s,
                              failed=lambda: bool(errors), tick=progress, may_die=shared.may_die)
        errors.extend(driven.errors)
    finally:
        for col, _, _ in collectors:
            col.stop()
        for _, t, _ in collectors:
            t.join(timeout=30)
        for _, _, store in collectors:
            store.close()
    downloads = [d for f in sorted(results.glob("*.jsonl")) for d in clients.read_results(f)]
    arms = [attribute(schedule, start_wall, d.start, d.ttlb_s) for d in downloads]
    _store_downloads(shared.store_path, plan.run_id, downloads, arms)  # first: nothing collected is lost
    if driven.dead:
        raise StepError(node_died_message(handle, driven.dead, f"during traffic phase {plan.label}")
                        + f"\n{len(downloads)} downloads up to then are in the store")
    if errors:
        exc = errors[0]
        if isinstance(exc, HarnessError):
            raise exc
        raise StepError(f"traffic/collection failed: {type(exc).__name__}: {exc}") from exc
    per_arm = {a.name: arms.count(a.name) for a in schedule.arms}
    return PhaseResult(len(downloads), arms.count(STRADDLE), start_wall, time.time(), per_arm,
                       straddle_note(plan.label, schedule.period_s, downloads, arms))


def attribute(schedule: Schedule, start_wall: float, start: float, ttlb_s: float | None) -> str:
    """The arm in force for the whole download, or STRADDLE when a switch fell inside it."""
    begin = schedule.slot_at(max(0.0, start - start_wall))
    end = schedule.slot_at(max(0.0, start + (ttlb_s or 0.0) - start_wall))
    return str(begin.arm.name) if (begin.block, begin.index) == (end.block, end.index) else STRADDLE


def straddle_note(label: str, period_s: float, downloads: Sequence[Download], arms: Sequence[str]) -> str:
    """A line saying how many downloads ran across a switch, per size, against the period."""
    total = sum(a == STRADDLE for a in arms)
    if not total:
        return ""
    by_size: dict[int, list[tuple[Download, str]]] = {}
    for d, a in zip(downloads, arms, strict=True):
        by_size.setdefault(d.size, []).append((d, a))
    parts = []
    for size, items in sorted(by_size.items()):
        n = sum(a == STRADDLE for _, a in items)
        times = [d.ttlb_s for d, _ in items if d.ttlb_s is not None]
        med = f", median TTLB {statistics.median(times):.1f} s" if times else ""
        parts.append(f"{_size_name(size)}: {n} of {len(items)}{med}")
    longest = max((d.ttlb_s for d in downloads if d.ttlb_s is not None), default=0.0)
    hint = (f"; downloads take up to {longest:.0f} s: pass --period {2 * longest:.0f} or more"
            if longest > period_s / 2 else "")
    return (f"{label}: {total} of {len(downloads)} downloads ran across an arm switch (period {period_s:g} s) "
            f"and are not attributed to an arm ({'; '.join(parts)}){hint}.")


def _loops_of(net: Network, name: str) -> int:
    return next((node.loops for node in net.nodes if node.name == name), 1)


def _profile_of(net: Network, name: str) -> str:
    for node in net.nodes:
        if node.name == name:
            return str(node.profile.value)
    raise StepError(f"client {name} is not in the scenario")


def _store_downloads(store_path: Path, run_id: str, downloads: Sequence[Download], arms: Sequence[str]) -> None:
    """Downloads into the store, each tagged with its arm (or STRADDLE)."""
    items = [(Context(run_id, fingerprint=d.client, arm=arm), Record(Kind.DOWNLOAD, d.start, asdict(d)))
             for d, arm in zip(downloads, arms, strict=True)]
    with Store(store_path) as store:
        store.write_batch(items)
