"""`kist-harness collect --fleet FLEET.toml`: every relay of a fleet file into one store.

Kept apart from collect.py (one relay) so that each stays readable; the flags are shared.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
import time
from typing import Any

from harness.errors import InputError
from harness.signals import HANDLED, Stopped

_ONE_RELAY_FLAGS = ("control", "ssh", "cookie", "password_file")


def run(args: argparse.Namespace) -> int:
    """Validate everything, then collect; exit 0, 3 (a relay's settings not restored), or 128+N."""
    from harness.commands.collect import _event_names, parse_duration
    from harness.control import abtest
    from harness.control.fleet import FleetCollector, FleetSettings
    from harness.control.fleetfile import load
    from harness.store.db import Store

    given = [f"--{f.replace('_', '-')}" for f in _ONE_RELAY_FLAGS if getattr(args, f) is not None]
    if given:
        raise InputError(f"{', '.join(given)} name{'s' if len(given) == 1 else ''} one relay; with --fleet each relay's control "
                         "endpoint, cookie and password file come from the fleet file: drop "
                         f"{' and '.join(given)}, or drop --fleet.")
    if args.export_runs is not None:
        raise InputError("--export-runs with --fleet would mix the relays' runs: after the collection, "
                         "export one relay's with `kist-harness collect --out STORE --run-id RUN/NAME "
                         "--export-runs FILE`.")
    fleet = load(args.fleet, args.inventory)
    if args.ab:
        abtest.parse_arms(args.ab)
    if args.processes is not None and args.processes < 1:
        raise InputError(f"--processes {args.processes}: give 1 or more.")
    duration = parse_duration(args.duration, "--duration") if args.duration else None
    seed = args.seed if args.seed is not None else secrets.randbits(32)
    run_id = args.run_id or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)
    settings = FleetSettings(run_id=run_id, duration_s=duration,
                             snapshot_every_s=parse_duration(args.snapshot_every, "--snapshot-every"),
                             buffer_events=args.buffer_events, buffer_bytes=args.buffer_mb << 20,
                             parse_workers=max(0, args.parse_workers),
                             patch_hash=args.patch_hash, extra_events=_event_names(args.events),
                             ab=args.ab, period_s=parse_duration(args.period, "--period"), seed=seed,
                             inventory=fleet.inventory)
    Store(args.out).close()  # the store can be written (and is a store): checked before starting
    processes = args.processes or min(os.cpu_count() or 1, len(fleet.relays))
    collector = FleetCollector(fleet.relays, settings, args.out, processes)
    stopped_by: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        if collector.stop_event.is_set():
            raise Stopped(signum)
        stopped_by.append(signum)
        collector.stop()

    previous = {s: signal.signal(s, on_signal) for s in HANDLED}
    print(f"run {run_id}: collecting from {len(fleet.relays)} relays of {args.fleet} into {args.out} "
          f"({collector.processes} processes)" + (f"; A/B {args.ab} every {args.period}, seed {seed}"
                                                  if args.ab else ""), file=sys.stderr)
    try:
        states = collector.run(_printer())
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    _print_final(states, run_id, args)
    if any(s.restore_failed for s in states.values()):
        for st in states.values():
            if st.restore_failed:
                print(f"WARNING: {st.name}: the relay's settings were not restored: {st.restore_failed}",
                      file=sys.stderr)
        return 3
    if stopped_by:
        stop = Stopped(stopped_by[0])
        print(f"kist-harness collect: stopped by {stop.name}; every relay's records stored and the "
              "store closed cleanly", file=sys.stderr)
        return stop.exit_code
    return 0


def table(states: dict[str, Any], elapsed: float) -> list[str]:
    """The progress table: a total line, then one line per relay."""
    rows = list(states.values())
    up = sum(1 for s in rows if s.state == "up")
    total = sum(s.events_per_s for s in rows)
    lines = [f"{elapsed:7.0f}s {up}/{len(rows)} up {total:8.0f} ev/s stored={sum(s.stored for s in rows)} "
             f"gaps={sum(s.gaps for s in rows)} shed={sum(s.shed for s in rows)} "
             f"errors={sum(s.errors for s in rows)}"]
    for s in rows:
        lines.append(f"  {s.name:20} {s.state:11} arm={s.arm:8} {s.events_per_s:7.0f} ev/s stored={s.stored} "
                     f"gaps={s.gaps} shed={s.shed} queued={s.queued}"
                     + (f"  ({s.last_error[:80]})" if s.state in ("unreachable", "failed") else ""))
    return lines


def _printer() -> Any:
    tty = sys.stderr.isatty()
    last = [0.0, 0]

    def show(fc: Any) -> None:
        now = time.monotonic()
        if now - last[0] < (1 if tty else 30):
            return
        last[0] = now
        lines = table(fc.states, fc.elapsed_s)
        if tty and last[1]:
            print(f"\x1b[{last[1]}F", end="", file=sys.stderr)  # redraw the table in place
        print("\n".join(line + "\x1b[K" if tty else line for line in lines), file=sys.stderr, flush=True)
        last[1] = len(lines)
    return show


def _print_final(states: dict[str, Any], run_id: str, args: argparse.Namespace) -> None:
    from harness.control.fleet import relay_run_id

    rows = list(states.values())
    print(f"run {run_id}: {len(rows)} relays, {sum(s.events for s in rows)} events, "
          f"{sum(s.stored for s in rows)} records stored in {args.out}, {sum(s.errors for s in rows)} malformed, "
          f"{sum(s.gaps for s in rows)} gaps, {sum(s.shed for s in rows)} shed")
    for s in rows:
        print(f"  {s.name}: session {relay_run_id(run_id, s.name)}: {s.state}, {s.events} events, "
              f"{s.stored} stored, {s.gaps} gaps, {s.shed} shed"
              + (f" ({s.last_error})" if s.last_error and s.state != "done" else ""))
