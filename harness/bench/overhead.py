"""Benchmark: what the patch series costs a relay, side by side with unpatched Tor.

    python -m harness.bench.overhead [--reps 5] [--mb 40] [--unpatched TOR] [--patched TOR]

One local private network (``overhead.toml``: tor processes on 127.0.0.x) whose every
circuit crosses one middle relay, ``dut``. Three arms run on that relay, interleaved
A B C, C B A, A B C ... (one cycle per repetition, the order reversed every other cycle
so that drift within a cycle does not always favour the same arm; after one unrecorded
warm-up run), each on a freshly started process with the same torrc, data directory
and keys:

- ``A`` unpatched tor built from the same Debian source with the same flags
  (``kist-harness build --no-patches``);
- ``B`` the patched tor, no controller connected;
- ``C`` the patched tor with one controller subscribed to every event the series adds
  (``KIST_RUN KIST_OVERHEAD KIST_QTIME KIST_KQTIME``), reading them as the collector does
  (stem, events handed off unparsed) and counting them.

Each repetition downloads the same bytes from the network's file server through both
clients at once. The relay's CPU time over the repetition (``/proc/PID/task/*/schedstat``,
every thread, from just before the downloads to when its event stream went quiet) is
divided by the megabytes carried (application payload, 10^6 bytes); throughput is payload
over the downloads' wall time. The machine is shared, so CPU time is the figure to trust;
throughput moves with whatever else runs.

Intervals: 95 % Student-t intervals over the repetitions (mean +- t(0.975, n-1) s/sqrt n).
The overheads B/A and C/A are paired by cycle (the ratio of each cycle's B or C to that
cycle's A, then the t-interval of those ratios), which cancels drift slower than a cycle.
Goals: B within 1 % of A, C at most 5 % more CPU than A.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.bench.dut import CpuTime, Relay, cpu_time
from harness.config import load_scenario
from harness.errors import HarnessError, InputError, StepError
from harness.experiments.stats import mean_interval
from harness.network import lifecycle
from harness.network.running import RunningNetwork
from harness.signals import exit_code_of, stop_on_signals
from harness.traffic import clients as traffic

log = logging.getLogger(__name__)

SCENARIO = Path(__file__).with_name("overhead.toml")
DUT = "dut"
EVENTS = ("KIST_RUN", "KIST_OVERHEAD", "KIST_QTIME", "KIST_KQTIME")
READY_TIMEOUT_S = 120.0
SETTLE_S = 2.0         # after the first circuit works: let descriptor upload and self-tests pass
QUIET_S = 0.5          # the window ends once no event arrived for this long
QUIET_MAX_S = 60.0
STREAMS_PER_CLIENT = 2
PROBE_SIZE = 100_000


@dataclass(frozen=True)
class Arm:
    label: str
    what: str
    binary: Path
    events: tuple[str, ...] = ()


@dataclass(frozen=True)
class Sample:
    """One repetition of one arm."""

    arm: str
    cycle: int
    payload_bytes: int
    wall_s: float
    cpu: CpuTime
    events: int = 0
    event_bytes: int = 0

    @property
    def cpu_ms_per_mb(self) -> float:
        return self.cpu.seconds * 1e3 / (self.payload_bytes / 1e6)

    @property
    def mb_per_s(self) -> float:
        return self.payload_bytes / 1e6 / self.wall_s


# ------------------------------------------------------------------ the events reader


class EventCounter:
    """A controller subscribed to the given events, counting what tor sends."""

    def __init__(self, host: str, port: int, cookie: Path, events: Sequence[str]) -> None:
        from harness.control.auth import Credentials, authenticate
        from harness.control.session import make_controller, subscribe
        from harness.control.transport import TcpTransport

        self.counts: Counter[str] = Counter()
        self.bytes = 0
        self.last = time.monotonic()
        self._lock = threading.Lock()
        self._transport = TcpTransport(host, port)
        self._controller = make_controller(self._transport.connect(), self._sink)
        try:
            authenticate(self._controller, Credentials(cookie))
            accepted, rejected = subscribe(self._controller, list(events))
        except BaseException:
            self.close()
            raise
        if rejected:
            self.close()
            raise StepError(f"relay under test refused events: {'; '.join(rejected.values())} "
                            "(is --patched the patched build?)")
        log.info("subscribed to %s", " ".join(accepted))

    def _sink(self, message: Any) -> None:
        raw = message.raw_content()
        with self._lock:
            self.counts[raw[4:raw.find(" ", 4)]] += 1
            self.bytes += len(raw)
            self.last = time.monotonic()

    def snapshot(self) -> tuple[int, int, float]:
        with self._lock:
            return sum(self.counts.values()), self.bytes, self.last

    def close(self) -> None:
        try:
            self._controller.close()
        finally:
            self._transport.close()


# ------------------------------------------------------------------ one repetition


def _fetch_all(handle: RunningNetwork, size: int, streams: int, timeout: float) -> list[traffic.Download]:
    server = handle.servers[0]
    jobs = [c for c in handle.clients for _ in range(streams)]
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = [pool.submit(traffic.fetch, c.socks, (server.host, server.port), size, client=c.name,
                               profile="overhead", timeout=timeout) for c in jobs if c.socks]
        return [f.result() for f in futures]


def _wait_ready(handle: RunningNetwork, relay: Relay) -> None:
    """Until a small download works through every client (their circuits cross the relay)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    last = ""
    while time.monotonic() < deadline:
        if not relay.alive():
            raise StepError(f"relay under test exited after a restart; last log lines:\n{relay.log_tail()}")
        failed = [d for d in _fetch_all(handle, PROBE_SIZE, 1, 15.0) if d.outcome != traffic.Outcome.OK.value]
        if not failed:
            return
        last = failed[0].error
        time.sleep(0.5)
    raise StepError(f"no circuit through the restarted relay within {READY_TIMEOUT_S:.0f} s (last error: "
                    f"{last}); its last log lines:\n{relay.log_tail()}")


def run_one(handle: RunningNetwork, relay: Relay, arm: Arm, cycle: int, size: int) -> Sample:
    """Restart the relay as ``arm`` and measure one set of downloads through it."""
    relay.stop()
    relay.start(arm.binary)
    node = handle.node(DUT)
    counter = None
    try:
        if arm.events:
            deadline = time.monotonic() + 30
            while True:  # the control port opens a moment after start
                try:
                    counter = EventCounter(node.control_host, node.control_port, node.cookie_path, arm.events)
                    break
                except StepError:
                    if time.monotonic() > deadline or not relay.alive():
                        raise
                    time.sleep(0.2)
        _wait_ready(handle, relay)
        time.sleep(SETTLE_S)
        n0, b0 = (counter.snapshot()[:2] if counter else (0, 0))
        cpu0 = cpu_time(relay.pid)
        t0 = time.monotonic()
        downloads = _fetch_all(handle, size, STREAMS_PER_CLIENT, 600.0)
        wall = time.monotonic() - t0
        bad = [d for d in downloads if d.outcome != traffic.Outcome.OK.value]
        if bad:
            raise StepError(f"arm {arm.label} cycle {cycle}: {len(bad)} of {len(downloads)} downloads failed "
                            f"({bad[0].error}); relay log:\n{relay.log_tail()}")
        # Tor formats and queues events during the run and writes them to the controller
        # from its main loop: keep counting until the stream went quiet.
        end = time.monotonic() + QUIET_S
        give_up = time.monotonic() + QUIET_MAX_S
        while counter and time.monotonic() < give_up:
            last = counter.snapshot()[2]
            if time.monotonic() - last >= QUIET_S:
                break
            time.sleep(0.05)
        while time.monotonic() < end:
            time.sleep(0.05)
        cpu = cpu_time(relay.pid) - cpu0
        n1, b1 = (counter.snapshot()[:2] if counter else (0, 0))
    finally:
        if counter is not None:
            counter.close()
    if arm.events and n1 - n0 == 0:
        raise StepError(f"arm {arm.label}: the relay sent no events while subscribed to {' '.join(arm.events)}")
    return Sample(arm.label, cycle, sum(d.received for d in downloads), wall, cpu, n1 - n0, b1 - b0)


# ------------------------------------------------------------------ the whole run


def resolve_arms(unpatched: Path | None, patched: Path | None) -> list[Arm]:
    """The three arms; unset binaries come from the build cache (built if missing)."""
    from harness import build

    def progress(ev: build.StepEvent) -> None:
        if ev.status in ("start", "failed"):
            print(f"  build: {ev.step} {ev.status} {ev.detail}", file=sys.stderr, flush=True)

    for p in (unpatched, patched):
        if p is not None and not p.is_file():
            raise InputError(f"{p}: no such tor binary; give the path `kist-harness build` printed.")
    if unpatched is None:
        unpatched = build.ensure_built("debian", None, progress).tor
    if patched is None:
        patched = build.ensure_built("debian", build.default_patches_dir(), progress).tor
    return [Arm("A", "unpatched", unpatched), Arm("B", "patched, nothing subscribed", patched),
            Arm("C", "patched, every event subscribed", patched, EVENTS)]


def run_bench(arms: Sequence[Arm], reps: int, total_mb: float, warmup: int = 1) -> list[Sample]:
    net = load_scenario(SCENARIO)
    clients = sum(1 for n in net.nodes if n.role.value == "client")
    size = int(total_mb * 1e6 / (clients * STREAMS_PER_CLIENT))
    samples: list[Sample] = []
    print(f"network up (local backend; relay under test `{DUT}`) ...", flush=True)
    with lifecycle.up(net, "local", arms[1].binary) as handle:
        node = handle.node(DUT)
        assert node.pid is not None
        relay = Relay(node.pid, node.log_path)
        try:
            for w in range(warmup):
                s = run_one(handle, relay, arms[1], -w, size)
                print(f"warm-up ({arms[1].label}): {s.cpu_ms_per_mb:.2f} ms CPU per MB, {s.mb_per_s:.1f} MB/s "
                      "(not counted)", flush=True)
            for cycle in range(1, reps + 1):
                # A B C, then C B A: a drift within a cycle (the machine is shared) does not
                # always land on the arm that runs last
                for arm in (arms if cycle % 2 else list(reversed(arms))):
                    s = run_one(handle, relay, arm, cycle, size)
                    samples.append(s)
                    extra = f", {s.events} events ({s.event_bytes / 1e6:.1f} MB)" if arm.events else ""
                    print(f"cycle {cycle} {arm.label}: cpu {s.cpu.seconds:.3f} s (ticks {s.cpu.tick_seconds:.2f} s) "
                          f"for {s.payload_bytes / 1e6:.1f} MB in {s.wall_s:.1f} s: "
                          f"{s.cpu_ms_per_mb:.2f} ms/MB, {s.mb_per_s:.1f} MB/s{extra}", flush=True)
        finally:
            relay.stop()
    return samples


def summarize(arms: Sequence[Arm], samples: Sequence[Sample]) -> list[str]:
    lines = []
    by_arm = {a.label: [s for s in samples if s.arm == a.label] for a in arms}
    for a in arms:
        cpu = mean_interval([s.cpu_ms_per_mb for s in by_arm[a.label]])
        thr = mean_interval([s.mb_per_s for s in by_arm[a.label]])
        lines.append(f"arm {a.label} ({a.what}): relay CPU {cpu.mean:.2f} +- {cpu.half_width:.2f} ms per MB, "
                     f"throughput {thr.mean:.1f} +- {thr.half_width:.1f} MB/s (n={cpu.k}, 95% t-interval)")
    base = {s.cycle: s for s in by_arm["A"]}
    for label, goal in (("B", 1.0), ("C", 5.0)):
        ratios = [(s.cpu_ms_per_mb / base[s.cycle].cpu_ms_per_mb - 1) * 100 for s in by_arm[label]
                  if s.cycle in base]
        thr_pct = [(s.mb_per_s / base[s.cycle].mb_per_s - 1) * 100 for s in by_arm[label] if s.cycle in base]
        iv, tv = mean_interval(ratios), mean_interval(thr_pct)
        if label == "B":  # within +-goal: the whole interval inside, or wholly outside to miss it
            verdict = ("met" if -goal <= iv.low and iv.high <= goal else
                       "MISSED" if iv.low > goal or iv.high < -goal else "not shown (the interval crosses it)")
            goal_text = f"within {goal:g}%"
        else:
            verdict = ("met" if iv.high <= goal else "MISSED" if iv.low > goal else
                       "not shown (the interval crosses it)")
            goal_text = f"<= +{goal:g}%"
        lines.append(f"overhead {label} vs A: CPU per MB {iv.mean:+.1f}% [{iv.low:+.1f}%, {iv.high:+.1f}%], "
                     f"throughput {tv.mean:+.1f}% [{tv.low:+.1f}%, {tv.high:+.1f}%] "
                     f"(paired by cycle, n={iv.k}); goal {goal_text}: {verdict}")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.bench.overhead", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=5, help="repetitions per arm (cycles A B C), default 5")
    p.add_argument("--mb", type=float, default=40.0, help="megabytes (10^6 B) carried per repetition, default 40")
    p.add_argument("--warmup", type=int, default=1, help="unrecorded runs before the first cycle, default 1")
    p.add_argument("--unpatched", type=Path, help="unpatched tor (default: `kist-harness build --no-patches`)")
    p.add_argument("--patched", type=Path, help="patched tor (default: `kist-harness build`)")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.reps < 2:
            raise InputError(f"--reps {args.reps}: need at least 2 repetitions for an interval (5 or more advised)")
        if not 1 <= args.mb <= 10_000:
            raise InputError(f"--mb {args.mb:g}: give 1 to 10000 megabytes per repetition")
        with stop_on_signals():   # SIGTERM/SIGHUP unwind like Ctrl-C: the network is torn down
            arms = resolve_arms(args.unpatched, args.patched)
            for a in arms:
                print(f"arm {a.label}: {a.what}: {a.binary}" + (f" + SETEVENTS {' '.join(a.events)}" if a.events else ""))
            samples = run_bench(arms, args.reps, args.mb, args.warmup)
    except HarnessError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:   # Ctrl-C, or harness.signals.Stopped
        print("bench: interrupted; network torn down", file=sys.stderr)
        return exit_code_of(exc)
    for line in summarize(arms, samples):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
