"""The edge scenario: real patched tor relays driven onto the model's rare decision paths.

A main job takes about half of kist_reference's decision branches: its channels never close
mid-run, its sockets never fail a syscall, its runs never start late. This runs the
``edge`` scenario (harness/scenarios/edge.toml) through the main job (harness.run.job) with
faults injected from outside the model, at real boundaries, while the clients download:

- the ``kist`` relay CPU-starved in a cgroup of its own (CFS quota) and SIGSTOP/SIGCONT of
  ``slow`` (short and long stops): scheduler runs start late, the EWMA clock crosses ticks
  between cells, cells pile up in circuit queues;
- SIGKILL of the stock ``exit``, and TCP connections aborted mid-download (``ss -K``, SOCK_DESTROY):
  the patched relays' connections with the most unsent bytes, under different arms:
  channels close under load (their next write fails), circuits are torn down, DESTROY
  cells queue on the relays' other channels; the processes live on;
- strace attached to the ``kist`` relay failing one ``write`` in 500 with ECONNRESET: a
  write to the kernel fails inside a scheduler run, the channel closes mid-run (#23751);
- strace attached to the ``einval`` relay once its last arm (KIST) is on, failing every
  ``getsockopt`` with EINVAL: KIST's no-kernel-support fallback (scheduler_kist.c:216-227).
  Tor then exits on its next configuration change (scheduler.c:296-307: no usable scheduler
  in ``Schedulers=KIST``), which the phase-end restore is: that relay's restore failing is
  expected and said;
- a client building 40 circuits a second through three patched relays by its control port and
  closing each 3 s later: a circuit created in the coarse-clock step where Tor's two EWMA tick
  readers disagree rescales backwards (circuitmux_ewma.c:147-155 vs 533);
- the arms add KISTLite, KIST with a tiny socket-buffer factor (limits reached: channels
  re-added), and Vanilla; ``slow`` runs at tor's smallest relay rate (token buckets dry,
  outbufs above the high-water mark).

    python -m harness.checks.edge --out runs/edge [--coverage-data FILE]

prints the main job's summary line (with the model's branch coverage), the faults as
injected, and writes them to OUT/faults.json. Needs root (strace attaches with ptrace) and
the local backend.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import HarnessError, InputError
from harness.proc import spawn
from harness.progress import Steps

if TYPE_CHECKING:
    from harness.run.job import RunOutcome

log = logging.getLogger(__name__)

ARMS = ("KIST,KISTLite,Vanilla,tiny:Schedulers=KIST;KISTSockBufSizeFactor=0.02,"
        "nanf:Schedulers=KIST;KISTSockBufSizeFactor=nan,huge:Schedulers=KIST;KISTSockBufSizeFactor=1e300")
PERIOD_S = 8.0
DURATION_S = 80.0
STRACE = "strace"
# CFS bandwidth: the relay may run 3 ms in every 20 ms. It is throttled while it runs, so the
# stops land inside its work (between a run's end and its reschedule too: the run-late branch),
# unlike a SIGSTOP, which mostly lands in its idle epoll wait.
STARVE_QUOTA_US, STARVE_PERIOD_US = 3000, 20000
# Circuit churn: circuits per second a client builds through patched relays, and how long
# each stays open before it is closed.
CHURN_RATE, CHURN_LIFETIME_S = 40, 3.0
CGROUP_V1 = Path("/sys/fs/cgroup/cpu")
CGROUP_V2 = Path("/sys/fs/cgroup")


@dataclass
class Fault:
    at_s: float       # seconds after the traffic phase began
    action: str       # stop, kill, strace
    node: str
    detail: str = ""
    done: str = ""    # what happened (pid, or why not)


@dataclass
class FaultPlan:
    seed: int
    faults: list[Fault] = field(default_factory=list)

    def lethal_targets(self) -> frozenset[str]:
        """Nodes this plan ends on purpose (a SIGKILL; the EINVAL relay, which tor leaves at its
        next consensus): the traffic goes on without them instead of failing the run."""
        return frozenset(f.node for f in self.faults if f.action in ("kill", "strace"))


def plan(duration_s: float = DURATION_S, period_s: float = PERIOD_S, arms: str = ARMS, *,
         lethal: bool = True) -> FaultPlan:
    """The faults, and a schedule seed whose last arm is KIST for the strace window.

    ``lethal=False`` leaves out the two faults that end a tor process: the SIGKILL of the
    stock exit, and the EINVAL getsockopt (tor exits at its next consensus or configuration
    change with KIST unusable and Schedulers=KIST, scheduler.c:296-307). With them the run
    tells the traffic phase's liveness check that those nodes may die (lethal_targets), so the
    traffic goes on; a run that must reach its replay quickly every time (harness.mutants)
    does without them: ss -K and the ECONNRESET writes still close channels mid-run, KISTLite
    still takes the fallback limit."""
    from harness.control.abtest import parse_arms
    from harness.run.phase import HeldSchedule

    parsed = parse_arms(arms)
    for seed in range(1, 200):
        sched = HeldSchedule(parsed, period_s, seed, duration_s)
        last = sched.slot_at(duration_s - 1e-3)
        if last.arm.name == "KIST" and duration_s - last.start >= period_s * 0.75:
            break
    else:  # pragma: no cover - 1 in 4 seeds qualify
        raise InputError(f"no seed in 1..199 ends the arm schedule {arms!r} with KIST")
    faults = [Fault(t, "stop", "slow", "0.3 s") for t in (4.0, 9.0, 14.0, 19.0, 44.0, 49.0, 58.0, 66.0)]
    faults += [Fault(2.0, "starve", "kist", f"{STARVE_QUOTA_US}/{STARVE_PERIOD_US} us of CPU until "
                     f"{duration_s - 4:g} s"),
               Fault(26.0, "stop", "slow", "2.5 s"), Fault(36.0, "stop", "einval", "1.0 s"),
               *([Fault(30.0, "kill", "exit")] if lethal else []),
               *(Fault(t, "drop", node, "2") for t, node in ((12.0, "kist"), (20.0, "slow"), (28.0, "guard"),
                                                             (42.0, "kist"), (50.0, "slow"), (60.0, "kist"),
                                                             (64.0, "slow"), (36.0, "exitp"), (56.0, "exitp"))),
               *([Fault(last.start + 1.5, "strace", "einval",
                        f"getsockopt:error=EINVAL until {duration_s - 1.0:g} s")] if lethal else []),
               Fault(3.0, "churn", "webs", f"guard,einval,exitp {CHURN_RATE}/s until {duration_s - 6:g} s"),
               # every 500th write(2) of the busiest middle fails (OpenSSL writes TLS records with write):
               # mostly a KIST run's kernel write
               Fault(10.0, "strace", "kist", "write:error=ECONNRESET:when=300+500 until 70 s")]
    # a shortened run (harness.mutants) has no faults after its traffic ends
    return FaultPlan(seed, sorted((f for f in faults if f.at_s < duration_s), key=lambda f: f.at_s))


def _pids(run_glob: str, node: str) -> list[int]:
    """Processes of this network's ``node`` (their command line names its torrc under the run dir)."""
    found = []
    needle = f"/nodes/{node}/torrc"
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in cmd and run_glob in cmd and not cmd.startswith(STRACE):
            found.append(int(entry.name))
    return found


def _cont(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)


class Injector(threading.Thread):
    """Carries the plan out from when the traffic phase begins; keeps going on a failed fault."""

    def __init__(self, fault_plan: FaultPlan, run_marker: str, duration_s: float) -> None:
        super().__init__(name="edge-faults", daemon=True)
        self.plan = fault_plan
        self.marker = run_marker
        self.duration_s = duration_s
        self.started = threading.Event()
        self.stop = threading.Event()
        self.t0 = 0.0
        self.stracers: list[subprocess.Popen[bytes]] = []
        self.cgroup: Path | None = None

    def run(self) -> None:
        self.started.wait()
        self.t0 = time.monotonic()
        for fault in self.plan.faults:
            if self.stop.wait(max(0.0, self.t0 + fault.at_s - time.monotonic())):
                return
            try:
                fault.done = self._do(fault)
            except (OSError, subprocess.SubprocessError, ValueError) as exc:  # one failed fault, not all
                fault.done = f"failed: {exc}"
            log.info("fault at %.1f s: %s %s %s -> %s", time.monotonic() - self.t0, fault.action, fault.node,
                     fault.detail, fault.done)

    def _do(self, fault: Fault) -> str:
        if fault.action == "drop":
            return self._drop(fault.node, fault.detail)
        pids = _pids(self.marker, fault.node)
        if not pids:
            return "no such process (already gone)"
        pid = pids[0]
        if fault.action == "kill":
            os.kill(pid, signal.SIGKILL)
            return f"SIGKILL pid {pid}"
        if fault.action == "stop":
            secs = float(fault.detail.split()[0])
            os.kill(pid, signal.SIGSTOP)
            resume = threading.Timer(secs, _cont, (pid,))  # not daemon: the SIGCONT always goes out
            resume.start()
            return f"SIGSTOP pid {pid}, SIGCONT {secs:g} s later"
        if fault.action == "starve":
            return self._starve(pid, fault)
        if fault.action == "churn":
            return self._churn(fault)
        # strace: the syscall boundary; every getsockopt of the relay fails with EINVAL
        spec, _, until_text = fault.detail.partition(" until ")
        argv = [STRACE, "-qq", "-f", "-p", str(pid), "-e", f"trace={spec.split(':')[0]}",
                "-e", f"inject={spec}", "-o", "/dev/null"]
        proc = spawn(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.stracers.append(proc)
        until = float(until_text.split()[0])
        threading.Thread(target=self._detach, args=(proc, until), daemon=True).start()
        return f"{' '.join(argv)} (detached at {until:g} s)"

    def _drop(self, node: str, how_many: str) -> str:
        """Abort the relay's TCP connections with the most bytes in flight (SOCK_DESTROY, ``ss -K``):
        its next write on them fails and the peer gets a RST; both tor processes live on."""
        pids = set(_pids(self.marker, node))
        or_port = self._torrc_value(node, "ORPort").rsplit(":", 1)[-1]  # the same port on every address
        listing = subprocess.run(["ss", "-tnpH", "state", "established"], capture_output=True, text=True,
                                 timeout=60).stdout
        mine = []
        for line in listing.splitlines():
            cols = line.split()  # Recv-Q Send-Q Local Peer Process (no State column with a state filter)
            if len(cols) >= 5 and any(f"pid={p}," in line for p in pids) and or_port in (
                    cols[2].rsplit(":", 1)[1], cols[3].rsplit(":", 1)[1]):  # OR connections only, not control
                mine.append((int(cols[1]), cols[2], cols[3]))
        mine.sort(reverse=True)
        done = []
        for sendq, local, peer in mine[: int(how_many or 1)]:
            lip, lport = local.rsplit(":", 1)
            pip, pport = peer.rsplit(":", 1)
            res = subprocess.run(["ss", "-K", "-tnH", "src", lip, "sport", "=", f":{lport}", "dst", pip,
                                  "dport", "=", f":{pport}"], capture_output=True, text=True, timeout=10)
            if res.stdout.strip():
                done.append(f"{local}->{peer} ({sendq} B unsent)")
        return f"ss -K: aborted {', '.join(done) or 'nothing'}"

    def _churn(self, fault: Fault) -> str:
        """Circuits built and torn down through patched relays at a steady rate, from the client's
        control port (EXTENDCIRCUIT with an explicit path, CLOSECIRCUIT a few seconds later).

        Each circuit's EWMA data is allocated at its CREATE with ``cell_ewma_get_tick``, which
        already returns the next tick at exactly one tick length past the tick's start, while the
        CREATED cell is flushed with ``cell_ewma_get_current_tick_and_fraction``, which advances
        only past it (circuitmux_ewma.c:147-155 vs 533): a circuit created in that coarse-clock
        step rescales backwards (the model's ``scale_factor_between`` with a negative diff).
        One coarse step (4 ms at HZ=250) in every 10 s tick: only many circuits land in it."""
        spec, _, until_text = fault.detail.partition(" until ")
        hops_text, rate_text = spec.split()
        hops = hops_text.split(",")
        rate = float(rate_text.removesuffix("/s"))
        until = float(until_text.split()[0])
        fingerprints = [self._fingerprint(node) for node in hops]
        host, port = self._torrc_value(fault.node, "ControlPort").rsplit(":", 1)
        cookie = Path(self._torrc_value(fault.node, "CookieAuthFile"))
        threading.Thread(target=self._churn_loop, args=(fault, host, int(port), cookie, fingerprints, rate, until),
                         name="edge-churn", daemon=True).start()
        return f"{rate:g} circuits/s through {hops_text} until {until:g} s"

    def _churn_loop(self, fault: Fault, host: str, port: int, cookie: Path, path: list[str], rate: float,
                    until: float) -> None:
        import stem
        from stem.control import Controller

        from harness.control.auth import Credentials, authenticate

        launched = refused = 0
        open_circs: collections.deque[tuple[float, str]] = collections.deque()  # (launched at, id), oldest first
        try:
            with Controller.from_port(address=host, port=port) as ctl:
                authenticate(ctl, Credentials(cookie_path=cookie))
                next_at = time.monotonic()
                while not self.stop.is_set() and time.monotonic() < self.t0 + until:
                    try:
                        open_circs.append((time.monotonic(), ctl.extend_circuit("0", path, await_build=False)))
                        launched += 1
                    except stem.ControllerError:
                        refused += 1  # too many pending (MaxClientCircuitsPending): the next one may go
                    while open_circs and open_circs[0][0] < time.monotonic() - CHURN_LIFETIME_S:
                        with contextlib.suppress(stem.ControllerError):
                            ctl.close_circuit(open_circs.popleft()[1])
                    next_at += 1.0 / rate
                    self.stop.wait(max(0.0, next_at - time.monotonic()))
                for _, circ in open_circs:
                    with contextlib.suppress(stem.ControllerError):
                        ctl.close_circuit(circ)
        except (stem.SocketError, HarnessError, OSError) as exc:
            fault.done += f"; stopped: {exc}"
        fault.done += f"; {launched} circuits launched, {refused} refused"
        log.info("churn on %s: %d circuits launched, %d refused", fault.node, launched, refused)

    def _fingerprint(self, node: str) -> str:
        """A relay's RSA identity, from the ``fingerprint`` file tor writes in its DataDirectory."""
        text = (Path(self._torrc_value(node, "DataDirectory")) / "fingerprint").read_text()
        return "$" + text.split()[1]

    def _torrc_value(self, node: str, option: str) -> str:
        """An option's value in the node's torrc (under this network's run dir)."""
        pattern = f"{self.marker.strip('/')}*/nodes/{node}/torrc"
        for torrc in Path("/tmp").glob(pattern):
            for line in torrc.read_text().splitlines():
                if line.startswith(option + " "):
                    return line.split()[1]
        raise OSError(f"no {option} in /tmp/{pattern}")

    def _starve(self, pid: int, fault: Fault) -> str:
        """Move the relay into a CPU-limited cgroup of its own (v2 cpu.max, else v1 CFS quota)."""
        v2 = (CGROUP_V2 / "cgroup.controllers").is_file()
        base = CGROUP_V2 if v2 else CGROUP_V1
        group = base / f"kist-edgecov-starve-{os.getpid()}"
        group.mkdir()
        self.cgroup = group
        if v2:
            (group / "cpu.max").write_text(f"{STARVE_QUOTA_US} {STARVE_PERIOD_US}\n")
        else:
            (group / "cpu.cfs_period_us").write_text(f"{STARVE_PERIOD_US}\n")
            (group / "cpu.cfs_quota_us").write_text(f"{STARVE_QUOTA_US}\n")
        (group / "cgroup.procs").write_text(f"{pid}\n")
        until = float(fault.detail.rsplit("until", 1)[1].split()[0])
        threading.Thread(target=self._unstarve_at, args=(until,), daemon=True).start()
        return f"pid {pid} in {group} ({STARVE_QUOTA_US} us per {STARVE_PERIOD_US} us), released at {until:g} s"

    def _unstarve_at(self, until: float) -> None:
        self.stop.wait(max(0.0, self.t0 + until - time.monotonic()))
        self.unstarve()

    def unstarve(self) -> None:
        """Processes back to the parent cgroup, the group removed: nothing left behind."""
        group, self.cgroup = self.cgroup, None
        if group is None:
            return
        with contextlib.suppress(OSError):
            for line in (group / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):
                    (group.parent / "cgroup.procs").write_text(f"{line}\n")
        for _ in range(50):
            try:
                group.rmdir()
                return
            except OSError:
                time.sleep(0.1)
        log.warning("could not remove cgroup %s", group)

    def _detach(self, proc: subprocess.Popen[bytes], until: float) -> None:
        self.stop.wait(max(0.0, self.t0 + until - time.monotonic()))
        self.close_stracers([proc])

    def close_stracers(self, procs: list[subprocess.Popen[bytes]] | None = None) -> None:
        for proc in self.stracers if procs is None else procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # strace detaches from the tracee and exits
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


class _EdgeSteps(Steps):
    """The main job's progress, which also tells the injector when traffic begins."""

    def __init__(self, names: tuple[str, ...], injector: Injector) -> None:
        super().__init__(names)
        self.injector = injector

    def say(self, message: str) -> None:
        if message.startswith("phase base ("):
            self.injector.started.set()
        super().say(message)


def run_edge(out: Path, coverage_data: Path | None = None, tor: Path | None = None, *,
             duration_s: float = DURATION_S, period_s: float = PERIOD_S,
             first_divergence_only: bool = False, lethal: bool = True,
             drain_s: float | None = None, size_scale: float | None = None) -> tuple[RunOutcome, FaultPlan]:
    """The edge scenario once. ``duration_s``/``period_s`` shorten it (harness.mutants: one arm
    cycle, faults past the end are not injected); ``first_divergence_only`` replays up to the
    first divergence, without coverage or report (a mutant needs one divergence to die);
    ``lethal=False``: no fault that ends a tor process (see plan()); ``drain_s``: how long
    downloads in flight at the end may take (default harness.run.phase.DRAIN_S); ``size_scale``
    replaces the scenario's download size scale (smaller downloads in flight end sooner)."""
    from harness.config import scenario_path
    from harness.run.job import STEPS, RunConfig, run

    if shutil.which(STRACE) is None:
        raise InputError("strace is not installed: apt-get install strace (the EINVAL fault needs it).")
    if os.geteuid() != 0:
        raise InputError("the edge scenario attaches strace to a running tor: run it as root.")
    fault_plan = plan(duration_s, period_s, lethal=lethal)
    # a network name of its own: the injector finds this run's processes and torrcs by it
    name = f"edgecov{secrets.token_hex(3)}"
    tmp = Path(tempfile.mkdtemp(prefix="kist-edge-"))
    scenario = tmp / "edge.toml"
    text = scenario_path("edge").read_text().replace('name = "edgecov"', f'name = "{name}"', 1)
    if size_scale is not None:
        text = text.replace("size_scale = 1.0", f"size_scale = {size_scale!r}", 1)
    scenario.write_text(text)
    injector = Injector(fault_plan, f"/kist-net-{name}-", duration_s)
    injector.start()
    cfg = RunConfig(scenario=str(scenario), backend="local", out=out, arms=ARMS, period_s=period_s,
                    duration_s=duration_s, seed=fault_plan.seed, tor=tor, coverage_data=coverage_data,
                    first_divergence_only=first_divergence_only, report=not first_divergence_only,
                    drain_s=drain_s, may_die=fault_plan.lethal_targets())
    try:
        outcome = run(cfg, _EdgeSteps(STEPS, injector))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        injector.stop.set()
        injector.close_stracers()
        injector.unstarve()
        injector.join(timeout=10)
    (out / "faults.json").write_text(json.dumps(
        {"seed": fault_plan.seed, "arms": ARMS, "period_s": period_s, "duration_s": duration_s,
         "faults": [f.__dict__ for f in fault_plan.faults]}, indent=1))
    return outcome, fault_plan


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.checks.edge", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/edge"))
    ap.add_argument("--coverage-data", type=Path, default=None)
    ap.add_argument("--tor", type=Path, default=None, help="a prebuilt patched tor (default: build, cached)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    try:
        outcome, fault_plan = run_edge(args.out, args.coverage_data, args.tor)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    o = outcome
    print(f"runs={o.runs} decisions={o.decisions} divergences={o.divergences} downloads={o.downloads} "
          f"{o.coverage}")
    for f in fault_plan.faults:
        print(f"fault {f.at_s:5.1f} s {f.action:6} {f.node:7} {f.detail:10} {f.done}")
    for note in o.notes + o.phase_notes:
        print(f"note: {note}")
    print(f"store: {o.store}\nreport: {o.report}")
    return 1 if o.divergences else 0


if __name__ == "__main__":
    raise SystemExit(main())
