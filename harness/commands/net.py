"""`kist-harness net up|status|down SCENARIO`: a private Tor network you can leave running."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from harness.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("net", help="private Tor networks: up, status, down")
    nsub = p.add_subparsers(dest="net_command", required=True)
    u = nsub.add_parser("up", help="start a network and wait until a circuit carries data")
    u.add_argument("scenario", help="scenario name (basic, default) or path to a .toml file")
    u.add_argument("--backend", choices=("docker", "swarm", "local"), default="local")
    u.add_argument("--tor", type=Path, help="patched tor binary for nodes with binary = \"patched\"")
    u.set_defaults(func=_up)
    s = nsub.add_parser("status", help="per node bootstrap, flags and consensus weight")
    s.add_argument("scenario")
    s.set_defaults(func=_status)
    d = nsub.add_parser("down", help="stop every node and remove what `up` made")
    d.add_argument("scenario")
    d.add_argument("--force", action="store_true",
                   help="also remove every Docker object labelled for kist-harness networks, with or without state")
    d.set_defaults(func=_down)
    t = nsub.add_parser("traffic", help="run the scenario's client profiles; TTFB/TTLB as JSON lines")
    t.add_argument("scenario")
    t.add_argument("--out", type=Path, required=True, help="JSON-lines file to append downloads to")
    t.add_argument("--seed", type=int, default=0, help="think-time seed (logged; same seed, same pauses)")
    t.set_defaults(func=_traffic)


def _name(scenario: str) -> str:
    from harness.config import load_scenario
    return load_scenario(scenario).name


class _Progress:
    """One screen line per second: how many nodes are at 100% and who is slowest."""

    def __init__(self) -> None:
        self.last = -1.0
        self.tty = sys.stderr.isatty()  # redraw one line on a terminal; plain lines in CI logs

    def __call__(self, pct: dict[str, int], elapsed: float) -> None:
        complete = all(v >= 100 for v in pct.values())
        if elapsed - self.last < (1.0 if self.tty else 5.0) and not complete:
            return
        self.last = elapsed
        done = sum(v >= 100 for v in pct.values())
        slow = sorted(pct.items(), key=lambda kv: kv[1])[:3]
        detail = ", ".join(f"{k} {v}%" for k, v in slow if v < 100)
        line = f"  {elapsed:5.1f} s  bootstrapped {done}/{len(pct)}  {detail:<50}"
        if self.tty:
            print("\r" + line, end="\n" if complete else "", file=sys.stderr, flush=True)
        else:
            print(line.rstrip(), file=sys.stderr, flush=True)


def _up(args: argparse.Namespace) -> int:
    from harness.config import load_scenario
    from harness.network import lifecycle, running

    net = load_scenario(args.scenario)
    if running.state_file(net.name).is_file():
        raise InputError(f"network {net.name} is already up (state {running.state_file(net.name)}); "
                         f"`kist-harness net down {args.scenario}` first")
    t0 = time.monotonic()
    # SIGTERM/SIGHUP (kill, CI timeout) clean up like Ctrl-C: harness.signals, set by the CLI
    handle = lifecycle.start(net, args.backend, args.tor, progress=_Progress(), persist=True)
    t = handle.timings
    print(f"network {net.name} up in {time.monotonic() - t0:.1f} s ({args.backend}: configure "
          f"{t['configure_s']:.1f} s, start+bootstrap {t['start_bootstrap_s']:.1f} s, verify {t['verify_s']:.1f} s)")
    for n in handle.nodes:
        print(f"  {n.name:<10} {n.role.value:<9} control {n.control_host}:{n.control_port}  "
              f"{n.fingerprint or '-':<40}  {n.data_dir}")
    for s in handle.servers:
        print(f"  {s.name:<10} {'server':<9} http://{s.host}:{s.port}/bytes/N")
    for sh in handle.shaping:
        print(f"  shaping {sh.node}: rate {sh.rate_mbit} Mbit/s, loss {sh.loss_percent}%, "
              f"latency {sh.latency_ms} ms" + (f", skipped {', '.join(sh.skipped)}" if sh.skipped else ""))
    print(f"state: {running.state_file(net.name)}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from harness.network import lifecycle, ready, running

    handle = running.load(_name(args.scenario))
    dead = set(lifecycle.dead_nodes(handle))
    print(f"network {handle.name} ({handle.backend}, run {handle.run_id})")
    for st in ready.status(handle):
        state = "DEAD" if st.name in dead else (f"{st.bootstrap}%" if st.bootstrap is not None else "?")
        flags = ",".join(st.flags) or "-"
        bw = "-" if st.bandwidth is None else str(st.bandwidth)
        print(f"  {st.name:<10} {st.role:<9} {state:>5}  bw {bw:>6}  {flags}  {st.error}")
    for name in sorted(dead - {n.name for n in handle.nodes}):
        print(f"  {name:<10} server    DEAD")
    return 1 if dead else 0


def _down(args: argparse.Namespace) -> int:
    from harness.network import lifecycle, running

    name = _name(args.scenario)
    done: list[str] = []
    if running.state_file(name).is_file():
        done += lifecycle.teardown(running.load(name))
    elif not args.force:
        raise InputError(f"no network {name!r} is up (no state file {running.state_file(name)}); "
                         "use --force to remove leftover Docker objects by label anyway")
    if args.force:
        from harness.network import docker, swarm

        done += swarm.remove_labelled() + docker.remove_labelled()
    for line in done or ["nothing to remove"]:
        print(line)
    return 0


def _traffic(args: argparse.Namespace) -> int:
    from harness.config import load_scenario
    from harness.network import running
    from harness.traffic import profiles

    net = load_scenario(args.scenario)
    handle = running.load(net.name)
    summary = profiles.run_profiles(handle, net, args.out, seed=args.seed)
    print(f"{summary.downloads} downloads ({summary.failed} failed), seed {summary.seed}: {summary.path}")
    return 0
