"""`kist-harness run`: the main job, one step after another, with nothing left behind.

build (cached) → network up → traffic with collection, arms interleaved network-wide →
replay every KIST run through kist_reference → check queue times against the decision
timeline → tear down → report. A failure at any step names the step, keeps what was
collected (the store is committed batch by batch) and tears the network down.

Arms are applied to every patched relay at once, in interleaved periods with a seeded
order (harness.control.abtest), so a download is attributed to the arm that was in force
when it started; downloads that straddle a switch are kept but not attributed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import platform
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError, InputError, StepError
from harness.progress import Steps

log = logging.getLogger(__name__)

STEPS = ("build", "network", "traffic", "replay", "queue-times", "teardown", "report")
DOWNLOAD = "download"


@dataclass(frozen=True)
class RunConfig:
    scenario: str = "default"
    backend: str = "auto"          # auto: docker when the engine runs, else local
    out: Path = Path("runs/latest")
    arms: str = "KIST,Vanilla"     # harness.control.abtest.parse_arms syntax
    period_s: float | None = None  # per-arm period; default: traffic duration / (2 * arms)
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
    split: str = ""
    network_dir: Path | None = None  # the network's run directory (gone after teardown)
    notes: list[str] = field(default_factory=list)


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
    from harness import build, config, diff
    from harness.control.abtest import Schedule, parse_arms
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
    period = cfg.period_s or max(5.0, duration / (2 * len(arms)))
    backend = choose_backend(cfg.backend, outcome.notes)
    run_id = f"{net.name}-{time.strftime('%Y%m%dT%H%M%S')}"
    env: dict[str, str] = {"scenario": net.source, "backend": backend, "arms": cfg.arms,
                           "period_s": f"{period:g}", "traffic_s": f"{duration:g}", "seed": str(cfg.seed),
                           "kernel": platform.release(), "python": platform.python_version()}
    log.info("run %s: %s", run_id, json.dumps(env))

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
            handle = lifecycle.start(net, backend, tor_path, progress=lambda pct, elapsed: steps.say(
                f"{elapsed:4.0f} s: {sum(v >= 100 for v in pct.values())}/{len(pct)} nodes bootstrapped"))
            stack.callback(_teardown, handle, steps)
            outcome.network_dir = handle.run_dir
            env["network"] = f"{len(handle.nodes)} nodes ({backend}), run dir {handle.run_dir}"
            env["shaping in force"] = "; ".join(
                f"{s.node}: rate={s.rate_mbit} loss={s.loss_percent} latency={s.latency_ms}"
                + (f" skipped={','.join(s.skipped)}" if s.skipped else "") for s in handle.shaping) or "none"
            env.update({f"bring-up {k}": f"{v:.1f} s" for k, v in handle.timings.items()})

        with steps.step("traffic"):
            schedule = Schedule(arms, period, cfg.seed)
            for block in range(int(duration // (period * len(arms))) + 3):
                schedule.order(block)  # draw every block now: collector threads share the schedule
            _traffic_and_collect(handle, net, schedule, duration, store_path, run_id, out, steps, outcome, series)

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
    (out / "timings.json").write_text(json.dumps({**steps.durations, "split": outcome.split}, indent=1))
    return outcome


def _teardown(handle: Any, steps: Steps) -> None:
    from harness.network import lifecycle

    try:
        for line in lifecycle.teardown(handle):
            log.info("teardown: %s", line)
    except HarnessError as exc:  # never mask the original failure
        log.warning("teardown of %s was incomplete: %s", handle.run_id, exc)


def _traffic_and_collect(handle: Any, net: Any, schedule: Any, duration: float, store_path: Path, run_id: str,
                         out: Path, steps: Steps, outcome: RunOutcome, patch_hash: str) -> None:
    """One collector per patched relay and one download loop per client, for ``duration``."""
    from harness import traffic
    from harness.config import Binary
    from harness.control.auth import Credentials
    from harness.control.collector import CollectConfig, Collector
    from harness.control.store import Store
    from harness.control.transport import TcpTransport

    relays = [n for n in handle.relays if n.binary is Binary.PATCHED]
    if not relays:
        raise InputError(f"scenario {net.source}: no relay runs the patched tor, so there is nothing to "
                         "collect or replay; set binary = \"patched\" on the relays under test.")
    if not handle.servers or not handle.clients:
        raise InputError(f"scenario {net.source}: needs at least one file server and one client for traffic.")
    collectors: list[tuple[Collector, threading.Thread, Store]] = []
    errors: list[BaseException] = []
    cfg = CollectConfig(run_id=run_id, duration_s=duration + 2.0, patch_hash=patch_hash[:16])

    def guarded(fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    try:
        for node in relays:
            store = Store(store_path)
            col = Collector(TcpTransport(node.control_host, node.control_port),
                            Credentials(cookie_path=node.cookie_path), store, cfg, schedule=schedule)
            t = threading.Thread(target=guarded, args=(col.run,), name=f"collect-{node.name}", daemon=True)
            collectors.append((col, t, store))
        start_wall = time.time()
        for _, t, _ in collectors:
            t.start()
        server = (handle.servers[0].host, handle.servers[0].port)
        results = out / "downloads"
        results.mkdir()
        stop = threading.Event()
        clients = []
        for i, node in enumerate(handle.clients):
            profile = _profile_of(net, node.name)
            t = threading.Thread(target=guarded, name=f"traffic-{node.name}", daemon=True, args=(
                lambda n=node, p=profile, i=i: traffic.run_client(
                    n.socks, server, p, results / f"{n.name}.jsonl", client=n.name, duration_s=duration,
                    pause_scale=net.traffic.pause_scale, size_scale=net.traffic.size_scale,
                    max_downloads=net.traffic.max_downloads, seed=i + 1, stop=stop),))
            clients.append(t)
            t.start()
        deadline = time.monotonic() + duration + 60.0  # a download in flight may finish late
        last = 0.0
        while any(t.is_alive() for t in clients) and time.monotonic() < deadline and not errors:
            time.sleep(0.5)
            if time.monotonic() - last >= 5.0:
                last = time.monotonic()
                p = collectors[0][0].progress
                done = sum(len(traffic.read_results(f)) for f in results.glob("*.jsonl"))
                steps.say(f"{time.time() - start_wall:5.0f} s, arm {p.arm}: {done} downloads, "
                          f"{sum(c.progress.stored for c, _, _ in collectors)} records stored, "
                          f"{sum(c.progress.gaps for c, _, _ in collectors)} gaps")
        stop.set()
        for t in clients:
            t.join(timeout=30)
    finally:
        for col, _, _ in collectors:
            col.stop()
        for _, t, _ in collectors:
            t.join(timeout=30)
        for _, _, store in collectors:
            store.close()
    if errors:
        exc = errors[0]
        if isinstance(exc, HarnessError):
            raise exc
        raise StepError(f"traffic/collection failed: {type(exc).__name__}: {exc}") from exc
    outcome.downloads = _store_downloads(store_path, out / "downloads", run_id, schedule, start_wall)


def _profile_of(net: Any, name: str) -> str:
    for node in net.nodes:
        if node.name == name:
            return str(node.profile.value)
    raise StepError(f"client {name} is not in the scenario")


def _store_downloads(store_path: Path, results: Path, run_id: str, schedule: Any, start_wall: float) -> int:
    """Downloads into the store, each tagged with the arm in force when it started."""
    from harness import traffic
    from harness.control.records import Context, Record
    from harness.control.store import Store

    items = []
    for f in sorted(results.glob("*.jsonl")):
        for d in traffic.read_results(f):
            begin = schedule.slot_at(max(0.0, d.start - start_wall))
            end_t = d.start + (d.ttlb_s or 0.0)
            end = schedule.slot_at(max(0.0, end_t - start_wall))
            arm = begin.arm.name if (begin.block, begin.index) == (end.block, end.index) else "straddle"
            items.append((Context(run_id, fingerprint=d.client, arm=arm), Record(DOWNLOAD, d.start, asdict(d))))
    with Store(store_path) as store:
        store.write_batch(items)
    return len(items)
