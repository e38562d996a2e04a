"""`kist-harness run`: the main job, one step after another, with nothing left behind.

build (cached) → network up → traffic with collection, arms interleaved network-wide,
once for the base condition and once per load/loss variant the scenario names →
replay every KIST run through kist_reference → check queue times against the decision
timeline → tear down → report. A failure at any step names the step, keeps what was
collected (the store is committed batch by batch) and tears the network down.

Every phase is planned once, before anything starts (harness.run.plan: one PhasePlan
per phase); each has its own run id in the store, and a ``variant`` record per phase ties
that run id to its variant (and says why a variant was skipped), so the store's schema
needs no variant column and a report redrawn from the store alone splits every figure by
variant.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import platform
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from harness.config import Network
from harness.control.abtest import Arm
from harness.errors import HarnessError, InputError
from harness.network.running import RunningNetwork
from harness.progress import Steps
from harness.run.phase import PhasePlan, PhaseShared
from harness.store.db import Store
from harness.store.records import Context, Record
from harness.store.typed import VariantResult

if TYPE_CHECKING:
    from harness.build import Series
    from harness.checks.coverage import ModelCoverage
    from harness.checks.differential import DivergentRun
    from harness.checks.policy import PolicySpec

log = logging.getLogger(__name__)

STEPS = ("build", "network", "traffic", "replay", "queue-times", "teardown", "report")


@dataclass(frozen=True)
class RunConfig:
    scenario: str = "default"
    backend: str = "auto"          # auto: docker when the engine runs, else local
    out: Path = Path("runs/latest")
    arms: str = "KIST,Vanilla"     # harness.control.abtest.parse_arms syntax
    period_s: float | None = None  # per-arm period; default: harness.run.phase.choose_period
    duration_s: float | None = None  # traffic duration; default: the scenario's
    seed: int = 1
    tor: Path | None = None        # a prebuilt patched tor (skips the build)
    coverage_data: Path | None = None  # cumulative model-coverage file (default: beside the store)
    links: bool = True             # False: drop the scenario's [links] (the LAN baseline of a comparison)
    patches: Path | None = None    # a researcher's patch series, built on top of the project's (--patches)
    policy: str | None = None      # module:Class judging the runs of its scheduler (--policy)
    # harness.mutants: replay only up to the first divergence, without coverage, and no report
    first_divergence_only: bool = False
    report: bool = True
    drain_s: float | None = None   # downloads in flight at traffic's end: default harness.run.phase.DRAIN_S
    may_die: frozenset[str] = frozenset()  # nodes a fault plan ends on purpose: their death is not a failure


@dataclass
class RunOutcome:
    out: Path
    store: Path
    report: Path | None = None
    divergences: int = 0
    runs: int = 0
    decisions: int = 0
    downloads: int = 0
    queue_cells: int = 0           # cells whose KIST_QTIME times were checked against the timeline
    queue_mismatches: int = 0      # a finding, like a divergence: the patch and its record disagree
    coverage: str = ""             # model_branches=... (harness.checks.coverage), for the summary line
    phases: list[str] = field(default_factory=list)  # per phase: name, downloads per arm, or why skipped
    split: str = ""
    network_dir: Path | None = None  # the network's run directory: gone after teardown (the tests check)
    first_divergence: DivergentRun | None = None
    invariant_violations: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)
    phase_notes: list[str] = field(default_factory=list)  # skipped variants, periods: the report reads the store


def choose_backend(requested: str, notes: list[str] | None = None) -> str:
    """auto: Docker when an engine runs or can be started here (root), else local processes.

    Why the local backend was chosen goes into notes, so the report says it.
    """
    if requested in ("docker", "swarm", "local"):
        return requested
    if requested != "auto":
        raise InputError(f"--backend {requested!r}: choose docker, swarm, local or auto")
    from harness import host

    if host.docker_running():
        return "docker"
    reason = "this is not root, so the Docker engine could not be installed or started"
    if host.is_root():
        try:
            log.info("backend auto: %s", host.ensure_dockerd())
            return "docker"
        except HarnessError as exc:
            reason = f"the Docker engine could not be started ({exc})"
    if notes is not None:
        notes.append(f"Local backend: {reason}; the network ran as local tor processes on 127.0.0.x "
                     "(no per-node shaping). Pass --backend docker to insist on Docker.")
    log.warning("backend auto: %s; using the local backend", reason)
    return "local"


def run(cfg: RunConfig, steps: Steps | None = None) -> RunOutcome:
    from harness import config, host, outdir
    from harness.checks.coverage import DATA_FILE_NAME, ModelCoverage
    from harness.control.abtest import parse_arms

    steps = steps or Steps(STEPS)
    out = cfg.out.resolve()
    # every check before anything on disk changes: a misspelt scenario must not cost a
    # researcher the results in --out (and --out must be the harness's own, see outdir)
    if cfg.coverage_data is not None and cfg.coverage_data.resolve().is_relative_to(out):
        raise InputError(f"--coverage-data {cfg.coverage_data}: inside --out {cfg.out}, which every run replaces; "
                         "keep the cumulative file outside it.")
    model_cov = ModelCoverage(cfg.coverage_data) if cfg.coverage_data is not None else None  # checked now
    if cfg.first_divergence_only and cfg.coverage_data is not None:
        raise InputError("--coverage-data: coverage is not measured when the replay stops at the first divergence.")
    judge, extra = bring_your_own(cfg)
    net = config.load_scenario(cfg.scenario)
    if not cfg.links and net.links is not None:
        net = dataclasses.replace(net, links=None)
        log.info("links: off (--no-links): the scenario's [links] table is not applied")
    arms = parse_arms(cfg.arms)
    duration = cfg.duration_s or net.traffic.duration_s
    outdir.check(out)
    host.require("network")  # the build checks its own packages, only when it builds
    store_path = out / "store.sqlite"
    outcome = RunOutcome(out, store_path)
    backend = choose_backend(cfg.backend, outcome.notes)
    owned = outdir.claim(out, "kist-harness run")
    try:
        return _run(cfg, steps, net, arms, duration, backend, out, store_path, outcome,
                    None if cfg.first_divergence_only else model_cov or ModelCoverage(out / DATA_FILE_NAME),
                    judge, extra)
    finally:
        owned.record()  # the entries this run wrote, so the next run may replace exactly those


def bring_your_own(cfg: RunConfig) -> tuple[PolicySpec | None, Series | None]:
    """--policy loaded and checked, --patches read and checked (DEP-3 headers, series file):
    before anything is built, started or written, so a typo costs seconds, not a build."""
    from harness import build
    from harness.checks import policy

    judge = policy.load(cfg.policy) if cfg.policy is not None else None
    extra = None
    if cfg.patches is not None:
        if cfg.tor is not None:
            raise InputError(f"--patches {cfg.patches} and --tor {cfg.tor}: a given tor is run as it is, so the "
                             "patches would not be in it; drop --tor to build them, or drop --patches.")
        if not cfg.patches.is_dir():
            raise InputError(f"--patches {cfg.patches}: no such directory; give the directory that holds your "
                             "patches and their `series` file (docs/byo-scheduler.md).")
        extra = build.load_series(cfg.patches)
        if not extra.patches:
            raise InputError(f"--patches {cfg.patches}: no patches (a `series` file listing them, one a line, "
                             "and the .patch files beside it); see docs/byo-scheduler.md.")
    return judge, extra


def _run(cfg: RunConfig, steps: Steps, net: Network, arms: tuple[Arm, ...], duration: float, backend: str,
         out: Path, store_path: Path, outcome: RunOutcome, model_cov: ModelCoverage | None,
         judge: PolicySpec | None = None, extra: Series | None = None) -> RunOutcome:
    from harness import build
    from harness.checks import differential, queuetimes
    from harness.network import lifecycle, linkapply
    from harness.run.plan import plan_phases

    run_id = f"{net.name}-{time.strftime('%Y%m%dT%H%M%S')}"
    env: dict[str, str] = {"scenario": net.source, "backend": backend, "arms": cfg.arms,
                           "traffic_s": f"{duration:g}", "seed": str(cfg.seed),
                           "kernel": platform.release(), "python": platform.python_version()}
    extra_names = tuple(f"{cfg.patches.name}/{p.name}" for p in extra.patches) if extra and cfg.patches else ()
    if extra_names:
        env["extra patches"] = f"{', '.join(extra_names)} (from {cfg.patches}, on top of the series)"
    env["policy"] = judge.describe() if judge else "the faithful model (kist_reference.scheduler.POLICIES)"
    log.info("run %s: %s", run_id, json.dumps(env))
    # before anything starts: a skipped variant is said at once (and only here)
    plans = plan_phases(net, backend, run_id=run_id, arms=arms, duration_s=duration, period_s=cfg.period_s,
                        seed=cfg.seed)
    for plan in plans:
        if plan.skipped:
            steps.say(plan.skipped)
    if extra_names:
        steps.say(f"extra patches on top of the series: {', '.join(extra_names)}")
    if judge is not None:
        steps.say(f"the differential replays with --policy {judge.describe()}")

    with contextlib.ExitStack() as stack:
        with steps.step("build"):
            if cfg.tor is not None:
                tor_path, version, series = cfg.tor, "given", "given"
                steps.say(f"using the given tor {tor_path}")
            else:
                res = build.ensure_built(patches_dir=build.default_patches_dir(),
                                         progress=lambda ev: steps.say(f"{ev.step}: {ev.status} {ev.detail}"),
                                         extra_patches=cfg.patches)
                tor_path, version, series = res.tor, res.version, res.series_hash
            env.update({"tor": str(version), "patch series": series[:16], "tor binary": str(tor_path)})

        with steps.step("network"):
            handle = lifecycle.start(net, backend, tor_path, progress=_bootstrap_progress(steps))
            stack.callback(_teardown, handle)
            outcome.network_dir = handle.run_dir
            env["network"] = f"{len(handle.nodes)} nodes ({backend}), run dir {handle.run_dir}"
            env["shaping in force"] = "; ".join(
                f"{s.node}: rate={s.rate_mbit} loss={s.loss_percent} latency={s.latency_ms}"
                + (f" skipped={','.join(s.skipped)}" if s.skipped else "") for s in handle.shaping) or "none"
            env["links in force"] = linkapply.env_line(handle.run_dir)  # [links] (harness.network.linkapply)
            env.update({f"bring-up {k}": f"{v:.1f} s" for k, v in handle.timings.items()})

        if judge is not None or extra_names:  # before traffic: a store cut short still says what judges it
            _store_judge(store_path, run_id, judge, extra_names)
        with steps.step("traffic"):
            shared = PhaseShared(handle, net, store_path, out, series)
            if cfg.drain_s is not None:
                shared = dataclasses.replace(shared, drain_s=cfg.drain_s)
            shared = dataclasses.replace(shared, may_die=cfg.may_die)
            _phases(plans, shared, steps, outcome, env)

        with steps.step("replay"):
            judged_by = f"--policy {judge.spec}" if judge else differential.FAITHFUL_JUDGE
            summary = differential.check(differential.runs_from_store(store_path), out,
                                         progress=lambda r, d, v: steps.say(f"{r} runs, {d} decisions, {v} divergences"),
                                         coverage=model_cov, policies=judge.policies() if judge else None,
                                         judged_by=judged_by, stop_at_first=cfg.first_divergence_only)
            outcome.runs, outcome.decisions, outcome.divergences = (summary.runs, summary.decisions,
                                                                    len(summary.divergences))
            outcome.first_divergence = summary.divergences[0] if summary.divergences else None
            outcome.invariant_violations = summary.invariant_violations
            steps.say(f"{summary.runs} runs, {summary.decisions} decisions, {len(summary.divergences)} "
                      f"divergences from {judged_by}")
            if summary.runs == 0:
                outcome.notes.append("No KIST run records were collected: nothing was replayed.")
            if summary.coverage is not None:
                outcome.coverage = summary.coverage.summary()
                steps.say(summary.coverage.head()[0])

        with steps.step("queue-times"):
            if cfg.first_divergence_only and outcome.divergences:
                steps.say("skipped: the replay already found a divergence")
            else:
                qt = queuetimes.check_store(store_path)
                steps.say(qt.describe())
                outcome.notes.append(qt.describe())
                outcome.queue_cells, outcome.queue_mismatches = qt.cells, len(qt.mismatches)

        with steps.step("teardown"):
            stack.close()

    if not cfg.report:
        outcome.split = steps.split()
        return outcome
    with steps.step("report"):
        from harness.report.page import render
        from harness.report.read import read_store

        data = read_store(store_path, title=f"kist-harness run {run_id}", environment=env, diff=summary,
                    notes=tuple(outcome.notes))
        rendered = render(data, out / "report")
        outcome.report = rendered.html
        from harness.store.toolformats import add_to_report

        add_to_report(store_path, rendered.directory)  # OnionPerf/oniontrace formats in report/tools/
    outcome.split = steps.split()
    (out / "timings.json").write_text(json.dumps({**steps.durations, "split": outcome.split,
                                                  "phases": outcome.phases}, indent=1))
    return outcome


def _bootstrap_progress(steps: Steps) -> Callable[[Mapping[str, int], float], None]:
    """A line when the count of bootstrapped nodes changes, or every 10 s: not one per poll."""
    last_done, last_said = -1, -10.0

    def say(pct: Mapping[str, int], elapsed: float) -> None:
        nonlocal last_done, last_said
        done = sum(v >= 100 for v in pct.values())
        if done != last_done or elapsed - last_said >= 10.0:
            last_done, last_said = done, elapsed
            steps.say(f"{elapsed:4.0f} s: {done}/{len(pct)} nodes bootstrapped")
    return say


def _teardown(handle: RunningNetwork) -> None:
    from harness.network import lifecycle

    try:
        for line in lifecycle.teardown(handle):
            log.info("teardown: %s", line)
    except HarnessError as exc:  # never mask the original failure
        log.warning("teardown of %s was incomplete: %s", handle.run_id, exc)


def _phases(plans: list[PhasePlan], shared: PhaseShared, steps: Steps, outcome: RunOutcome,
            env: dict[str, str]) -> None:
    """The base condition, then each variant, back to back on the same network."""
    from harness.run import phase, variants

    for plan in plans:
        name = plan.label
        env[f"variant {name}"] = (plan.skipped or f"{plan.variant.describe()}; traffic {plan.duration_s:g} s, "
                                  f"period {plan.period_s:g} s")
        _store_variant(shared.store_path, plan.run_id, plan.plan_record(time.time()))  # first: a phase
        if plan.skipped:                                                                  # that fails is tagged
            outcome.phase_notes.append(plan.skipped)  # said when planned; the report reads the store
            outcome.phases.append(f"{name}: skipped")
            continue
        if plan.period_warning:
            steps.say(f"warning: {name}: {plan.period_warning}")
            outcome.phase_notes.append(f"{name}: {plan.period_warning}")
        steps.say(f"phase {name} ({plan.variant.describe()}): {plan.duration_s:g} s of traffic, "
                  f"arms every {plan.period_s:g} s")
        with variants.in_force(shared.handle, plan.variant) as applied:
            if applied:
                env[f"shaping {name}"] = "; ".join(applied)
            res = phase.run_phase(shared, plan, steps.say)
        _store_variant(shared.store_path, plan.run_id, VariantResult(
            name, res.start_wall, res.end_wall, res.downloads, res.straddled, res.per_arm, res.note).record())
        outcome.downloads += res.downloads
        arms_text = ", ".join(f"{a} {n}" for a, n in sorted(res.per_arm.items()))
        outcome.phases.append(f"{name}: {res.downloads} downloads ({arms_text}; {res.straddled} across an arm "
                              f"switch), {res.end_wall - res.start_wall:.0f} s")
        if res.note:
            steps.say(f"warning: {res.note}")
            outcome.phase_notes.append(res.note)


def _store_judge(store_path: Path, run_id: str, judge: PolicySpec | None, extra_names: tuple[str, ...]) -> None:
    """A ``judge`` record: which policy the runs are replayed with and which patches were on top."""
    from harness.store.typed import JudgeRecord

    rec = (judge.record(time.time(), extra_names) if judge is not None
           else JudgeRecord("", "", "", "", "", extra_names).record(time.time()))
    with Store(store_path) as store:
        store.write_batch([(Context(run_id, fingerprint="harness"), rec)])


def _store_variant(store_path: Path, run_id: str, record: Record) -> None:
    """A ``variant`` record: the phase's plan when it starts, its results when it ends (merged on reading)."""
    with Store(store_path) as store:
        store.write_batch([(Context(run_id, fingerprint="harness"), record)])
