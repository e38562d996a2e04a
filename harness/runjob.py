"""`kist-harness run`: the main job, one step after another, with nothing left behind.

build (cached) → network up → traffic with collection, arms interleaved network-wide,
once for the base condition and once per load/loss variant the scenario names →
replay every KIST run through kist_reference → check queue times against the decision
timeline → tear down → report. A failure at any step names the step, keeps what was
collected (the store is committed batch by batch) and tears the network down.

Each traffic phase (harness.trafficphase) has its own run id in the store; a ``variant``
record per phase ties that run id to its variant (and says why a variant was skipped),
so the store's schema needs no variant column and a report redrawn from the store alone
splits every figure by variant.
"""

from __future__ import annotations

import contextlib
import json
import logging
import platform
import shutil
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError, InputError
from harness.progress import Steps

log = logging.getLogger(__name__)

STEPS = ("build", "network", "traffic", "replay", "queue-times", "teardown", "report")


@dataclass(frozen=True)
class RunConfig:
    scenario: str = "default"
    backend: str = "auto"          # auto: docker when the engine runs, else local
    out: Path = Path("runs/latest")
    arms: str = "KIST,Vanilla"     # harness.control.abtest.parse_arms syntax
    period_s: float | None = None  # per-arm period; default: harness.trafficphase.choose_period
    duration_s: float | None = None  # traffic duration; default: the scenario's
    seed: int = 1
    tor: Path | None = None        # a prebuilt patched tor (skips the build)


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
    phases: list[str] = field(default_factory=list)  # per phase: name, downloads per arm, or why skipped
    split: str = ""
    network_dir: Path | None = None  # the network's run directory (gone after teardown)
    notes: list[str] = field(default_factory=list)
    phase_notes: list[str] = field(default_factory=list)  # skipped variants, periods: the report reads the store


def choose_backend(requested: str, notes: list[str] | None = None) -> str:
    """auto: Docker when an engine runs or can be started here (root), else local processes.

    Why the local backend was chosen goes into notes, so the report says it.
    """
    if requested in ("docker", "local"):
        return requested
    if requested != "auto":
        raise InputError(f"--backend {requested!r}: choose docker, local or auto")
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
    from harness import build, config, diff, variants
    from harness.control.abtest import parse_arms
    from harness.network import lifecycle

    steps = steps or Steps(STEPS)
    out = cfg.out.resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    store_path = out / "store.sqlite"
    outcome = RunOutcome(out, store_path)
    net = config.load_scenario(cfg.scenario)
    arms = parse_arms(cfg.arms)
    duration = cfg.duration_s or net.traffic.duration_s
    backend = choose_backend(cfg.backend, outcome.notes)
    run_id = f"{net.name}-{time.strftime('%Y%m%dT%H%M%S')}"
    env: dict[str, str] = {"scenario": net.source, "backend": backend, "arms": cfg.arms,
                           "traffic_s": f"{duration:g}", "seed": str(cfg.seed),
                           "kernel": platform.release(), "python": platform.python_version()}
    log.info("run %s: %s", run_id, json.dumps(env))
    phases = variants.phases(net, backend)  # before anything starts: a skipped variant is said at once
    for phase in phases:
        if phase.skipped:
            steps.say(phase.skipped)

    with contextlib.ExitStack() as stack:
        with steps.step("build"):
            if cfg.tor is not None:
                tor_path, version, series = cfg.tor, "given", "given"
                steps.say(f"using the given tor {tor_path}")
            else:
                res = build.ensure_built(patches_dir=build.default_patches_dir(),
                                         progress=lambda ev: steps.say(f"{ev.step}: {ev.status} {ev.detail}"))
                tor_path, version, series = res.tor, res.version, res.series_hash
            env.update({"tor": str(version), "patch series": series[:16], "tor binary": str(tor_path)})

        with steps.step("network"):
            handle = lifecycle.start(net, backend, tor_path, progress=_bootstrap_progress(steps))
            stack.callback(_teardown, handle, steps)
            outcome.network_dir = handle.run_dir
            env["network"] = f"{len(handle.nodes)} nodes ({backend}), run dir {handle.run_dir}"
            env["shaping in force"] = "; ".join(
                f"{s.node}: rate={s.rate_mbit} loss={s.loss_percent} latency={s.latency_ms}"
                + (f" skipped={','.join(s.skipped)}" if s.skipped else "") for s in handle.shaping) or "none"
            env.update({f"bring-up {k}": f"{v:.1f} s" for k, v in handle.timings.items()})

        with steps.step("traffic"):
            _phases(phases, handle, net, cfg, arms, duration, store_path, run_id, out, steps, outcome, series, env)

        with steps.step("replay"):
            summary = diff.check(diff.runs_from_store(store_path), out,
                                 progress=lambda r, d, v: steps.say(f"{r} runs, {d} decisions, {v} divergences"))
            outcome.runs, outcome.decisions, outcome.divergences = (summary.runs, summary.decisions,
                                                                    len(summary.divergences))
            steps.say(f"{summary.runs} runs, {summary.decisions} decisions, {len(summary.divergences)} "
                      "divergences from the faithful model")
            if summary.runs == 0:
                outcome.notes.append("No KIST run records were collected: nothing was replayed.")

        with steps.step("queue-times"):
            from harness.queuetimes import check_store

            qt = check_store(store_path)
            steps.say(qt.describe())
            outcome.notes.append(qt.describe())
            outcome.queue_cells, outcome.queue_mismatches = qt.cells, len(qt.mismatches)

        with steps.step("teardown"):
            stack.close()

    with steps.step("report"):
        from harness.report.load import interval_ms, load
        from harness.report.page import render

        data = load(store_path, title=f"kist-harness run {run_id}", environment=env, diff=summary,
                    notes=tuple(outcome.notes))
        rendered = render(data, out / "report", interval_ms=interval_ms(store_path))
        outcome.report = rendered.html
    outcome.split = steps.split()
    (out / "timings.json").write_text(json.dumps({**steps.durations, "split": outcome.split,
                                                  "phases": outcome.phases}, indent=1))
    return outcome


def _bootstrap_progress(steps: Steps) -> Any:
    """A line when the count of bootstrapped nodes changes, or every 10 s: not one per poll."""
    last_done, last_said = -1, -10.0

    def say(pct: Mapping[str, int], elapsed: float) -> None:
        nonlocal last_done, last_said
        done = sum(v >= 100 for v in pct.values())
        if done != last_done or elapsed - last_said >= 10.0:
            last_done, last_said = done, elapsed
            steps.say(f"{elapsed:4.0f} s: {done}/{len(pct)} nodes bootstrapped")
    return say


def _teardown(handle: Any, steps: Steps) -> None:
    from harness.network import lifecycle

    try:
        for line in lifecycle.teardown(handle):
            log.info("teardown: %s", line)
    except HarnessError as exc:  # never mask the original failure
        log.warning("teardown of %s was incomplete: %s", handle.run_id, exc)


def _phases(phases: list[Any], handle: Any, net: Any, cfg: RunConfig, arms: Any, duration: float,
            store_path: Path, run_id: str, out: Path, steps: Steps, outcome: RunOutcome, patch_hash: str,
            env: dict[str, str]) -> None:
    """The base condition, then each variant, back to back on the same network."""
    from harness import trafficphase, variants

    for i, phase in enumerate(phases):
        v = phase.variant
        phase_run = run_id if i == 0 else f"{run_id}.{v.name}"
        loops, pause_factor = variants.client_load(v.load_scale)
        phase_duration = v.duration_s or duration
        period, warning = trafficphase.choose_period(cfg.period_s, phase_duration, len(arms),
                                                     trafficphase.expected_longest_s(net, loops))
        record: dict[str, Any] = {"variant": v.name, "describe": v.describe(), "load_scale": v.load_scale,
                                  "loops": loops, "pause_factor": pause_factor,
                                  "client_shaping": asdict(v.client_shaping), "duration_s": phase_duration,
                                  "period_s": period, "period_warning": warning, "seed": cfg.seed + i,
                                  "skipped": phase.skipped}
        env[f"variant {v.name}"] = (phase.skipped or f"{v.describe()}; traffic {phase_duration:g} s, "
                                    f"period {period:g} s")
        if phase.skipped:
            steps.say(phase.skipped)
            outcome.phase_notes.append(phase.skipped)
            outcome.phases.append(f"{v.name}: skipped")
            _store_variant(store_path, phase_run, time.time(), record)
            continue
        if warning:
            steps.say(f"warning: {v.name}: {warning}")
            outcome.phase_notes.append(f"{v.name}: {warning}")
        steps.say(f"phase {v.name} ({v.describe()}): {phase_duration:g} s of traffic, arms every {period:g} s")
        schedule = trafficphase.HeldSchedule(arms, period, cfg.seed + i, phase_duration)
        spec = trafficphase.PhaseSpec(phase_run, phase_duration, schedule, loops, pause_factor, v.name)
        _store_variant(store_path, phase_run, time.time(), record)  # first: a phase that fails is still tagged
        with variants.in_force(handle, v) as applied:
            if applied:
                env[f"shaping {v.name}"] = "; ".join(applied)
            res = trafficphase.run_phase(handle, net, spec, store_path, out, patch_hash, steps.say)
        _store_variant(store_path, phase_run, res.end_wall, {
            "variant": v.name, "start": res.start_wall, "end": res.end_wall, "downloads": res.downloads,
            "straddled": res.straddled, "per_arm": res.per_arm, "straddle_note": res.note})
        outcome.downloads += res.downloads
        arms_text = ", ".join(f"{a} {n}" for a, n in sorted(res.per_arm.items()))
        outcome.phases.append(f"{v.name}: {res.downloads} downloads ({arms_text}; {res.straddled} across an arm "
                              f"switch), {res.end_wall - res.start_wall:.0f} s")
        if res.note:
            steps.say(f"warning: {res.note}")
            outcome.phase_notes.append(res.note)


def _store_variant(store_path: Path, run_id: str, ts: float, data: dict[str, Any]) -> None:
    """A ``variant`` record: the phase's plan when it starts, its results when it ends (merged on load)."""
    from harness.control.records import Context, Record
    from harness.control.store import Store
    from harness.variants import VARIANT

    with Store(store_path) as store:
        store.write_batch([(Context(run_id, fingerprint="harness"), Record(VARIANT, ts, data))])
