"""`kist-harness collect`: record a relay's scheduler events into a store, optionally as an A/B test."""

from __future__ import annotations

import argparse
import re
import secrets
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import InputError
from harness.signals import HANDLED, Stopped

if TYPE_CHECKING:
    from harness.store.db import Store

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, flag: str) -> float:
    """``90``, ``45s``, ``10m``, ``1h30m``, ``2d`` → seconds."""
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text.strip()):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    if pos != len(text.strip()) or pos == 0 or total <= 0:
        raise InputError(f"{flag} {text!r} is not a duration: write e.g. 90s, 10m, 1h30m or 2d.")
    return total


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("collect", help="collect a relay's scheduler events into a store (long-running)",
                       description="Subscribe to a relay's control-port events (the KIST patch's when "
                       "present, standard ones always), store them crash-safely, optionally alternating "
                       "schedulers for an interleaved A/B experiment. Without --control: export or "
                       "summarise an existing store.")
    p.add_argument("--control", metavar="HOST:PORT|PATH",
                   help="tor control port or ControlSocket path (on the --ssh host if given)")
    p.add_argument("--ssh", metavar="HOST", help="reach --control (default: the inventory's) on HOST "
                   "through its SSH connection; nothing is opened on the network")
    p.add_argument("--inventory", type=Path, metavar="FILE", help="inventory naming the --ssh host "
                   "(default: $KIST_HARNESS_INVENTORY, else ./inventory.toml)")
    p.add_argument("--cookie", type=Path, help="control auth cookie file (default: what tor announces)")
    p.add_argument("--password-file", type=Path, help="file holding the control password")
    p.add_argument("--duration", help="how long to collect (e.g. 10m, 24h); default until Ctrl-C")
    p.add_argument("--out", type=Path, required=True, help="SQLite store to append to")
    p.add_argument("--ab", metavar="ARMS", help="A/B arms: KIST,Vanilla or NAME:Option=value;...,NAME:...")
    p.add_argument("--period", default="10m", help="A/B period per arm (default 10m)")
    p.add_argument("--seed", type=int, help="seed for the A/B order (default: random, logged)")
    p.add_argument("--snapshot-every", default="10s", help="GETINFO snapshot interval (default 10s)")
    p.add_argument("--patch-hash", help="patch series hash to tag records with (`kist-harness build` "
                   "reports it; tor does not), default: none, or unknown on a patched relay")
    p.add_argument("--run-id", help="run id to tag records with (default: generated)")
    p.add_argument("--buffer-events", type=int, default=200_000,
                   help="events held in memory when the store falls behind; beyond: shed, counted")
    p.add_argument("--buffer-mb", type=int, default=32,
                   help="raw megabytes of events held in memory at most (default 32)")
    p.add_argument("--parse-workers", type=int, default=1,
                   help="processes parsing KIST_RUN records (default 1; 0: in the writer thread)")
    p.add_argument("--events", metavar="NAMES", default="",
                   help="also subscribe to these events, comma-separated: the patch's KIST_QTIME (Tor queue "
                        "time per cell) and KIST_KQTIME (kernel queue time of sampled writes) are asked for only "
                        "on request, as their volume grows with traffic; any other event tor offers works too")
    p.add_argument("--fleet", type=Path, metavar="FLEET.toml",
                   help="collect from every relay the fleet file names into --out, one session per relay "
                        "(see docs/fleet.md); --inventory then names the SSH inventory of its `ssh` relays")
    p.add_argument("--processes", type=int, metavar="N",
                   help="with --fleet: shard processes the relays are spread over (default: one per core)")
    p.add_argument("--export-runs", type=Path, metavar="FILE",
                   help="afterwards, write KIST_RUN records as JSON lines for `kist-harness model replay`")
    p.set_defaults(func=_collect)


def _event_names(text: str) -> tuple[str, ...]:
    names = tuple(n.strip().upper() for n in text.split(",") if n.strip())
    bad = [n for n in names if not n.replace("_", "").isalnum()]
    if bad:
        raise InputError(f"--events {text!r}: {', '.join(bad)} is not an event name; write names such as "
                         "KIST_QTIME,KIST_KQTIME separated by commas.")
    return names


def _transport(args: argparse.Namespace) -> Any:
    from harness.control.transport import parse_control_address

    if not args.ssh:
        if args.inventory is not None:
            raise InputError("--inventory names the host for --ssh HOST; add --ssh, or drop --inventory.")
        return parse_control_address(args.control)
    # harness.remote implements the seam: a SocketFactoryTransport over SSH channels, with
    # ``cookie_path`` a private local copy of the relay's cookie (removed on close)
    from harness.remote.tunnel import ssh_transport

    return ssh_transport(args.ssh, args.control, args.inventory)


def _progress_printer() -> Any:
    tty = sys.stderr.isatty()
    last = [0.0]

    def show(p: Any) -> None:
        now = time.monotonic()
        if not tty and now - last[0] < 10:
            return
        last[0] = now
        line = (f"{p.elapsed_s:7.0f}s {'up' if p.connected else 'DOWN'} arm={p.arm} "
                f"{p.events_per_s:7.0f} ev/s stored={p.stored} errors={p.errors} gaps={p.gaps} "
                f"shed={p.shed} queued={p.queued}")
        print(("\r" + line + "\x1b[K") if tty else line, end="" if tty else "\n",
              file=sys.stderr, flush=True)
    return show


def _collect(args: argparse.Namespace) -> int:
    from harness.store.db import open_store

    if args.fleet is not None:
        from harness.commands import collect_fleet

        return collect_fleet.run(args)
    if args.processes is not None:
        raise InputError("--processes spreads the relays of --fleet over processes: add --fleet FILE.")
    if args.control is None and args.ssh is None:
        if args.ab or args.duration:
            raise InputError("--ab and --duration need --control HOST:PORT|PATH or --ssh HOST.")
        with open_store(args.out, readonly=True) as store:
            _print_store(store, args)
        return 0
    return _run_collection(args)


def _run_collection(args: argparse.Namespace) -> int:
    import logging

    import stem.util.log  # sets the "stem" logger to TRACE on import: import it first

    # stem logs every request at DEBUG and every read of a closed socket at INFO
    stem.util.log.get_logger().setLevel(logging.DEBUG if args.verbose >= 2 else logging.WARNING)
    from harness.control import abtest
    from harness.control.auth import Credentials
    from harness.control.collector import CollectConfig, Collector
    from harness.store.db import Store

    duration = parse_duration(args.duration, "--duration") if args.duration else None
    schedule = None
    seed = args.seed if args.seed is not None else secrets.randbits(32)
    if args.ab:
        arms = abtest.parse_arms(args.ab)
        schedule = abtest.Schedule(arms, parse_duration(args.period, "--period"), seed)
    run_id = args.run_id or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)
    config = CollectConfig(run_id=run_id, duration_s=duration,
                           snapshot_every_s=parse_duration(args.snapshot_every, "--snapshot-every"),
                           buffer_events=args.buffer_events, buffer_bytes=args.buffer_mb << 20,
                           parse_workers=max(0, args.parse_workers), patch_hash=args.patch_hash,
                           extra_events=_event_names(args.events))
    session = {"config": {k: str(v) for k, v in vars(config).items()},
               "ab": [a.describe() for a in schedule.arms] if schedule else None,
               "period_s": schedule.period_s if schedule else None,
               "seed": seed if schedule else None}
    transport = _transport(args)
    try:
        cookie = args.cookie or getattr(transport, "cookie_path", None)  # --ssh fetched it
        creds = Credentials.from_args(cookie, args.password_file)
        store = Store(args.out)
    except BaseException:
        transport.close()  # from here on the collector closes it
        raise
    with store:
        collector = Collector(transport, creds, store, config, schedule=schedule)

        stopped_by: list[int] = []

        def on_signal(signum: int, _frame: object) -> None:
            if collector.stop_event.is_set():  # a second Ctrl-C: stop waiting for the flush
                raise Stopped(signum)
            stopped_by.append(signum)
            collector.stop()  # first: restore settings, flush, close, summarise

        previous = {s: signal.signal(s, on_signal) for s in HANDLED}
        print(f"run {run_id}: collecting from {transport.describe()} into {args.out}"
              + (f"; A/B {args.ab} every {args.period}, seed {seed}" if schedule else ""),
              file=sys.stderr)
        try:
            final = collector.run(_progress_printer(), session)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            if sys.stderr.isatty():
                print(file=sys.stderr)
        _print_final(final, run_id, args.out)
        if schedule:
            _print_ab(store, run_id)
        if args.export_runs:
            _export(store, args.export_runs, run_id)
    if final.restore_failed:
        print(f"WARNING: the relay's settings were not restored: {final.restore_failed}", file=sys.stderr)
        return 3
    if stopped_by:
        # everything is flushed and closed: say so in one line, exit as a stopped process does
        stop = Stopped(stopped_by[0])
        print(f"kist-harness collect: stopped by {stop.name}; {final.stored} records stored and the "
              f"store closed cleanly", file=sys.stderr)
        return stop.exit_code
    return 0


def _print_final(p: Any, run_id: str, out: Path) -> None:
    print(f"run {run_id}: {p.elapsed_s:.0f} s, {p.events} events, {p.stored} records stored in {out}, "
          f"{p.errors} malformed, {p.gaps} gaps, {p.shed} shed")
    for name, why in sorted(p.unavailable.items()):
        print(f"  unavailable: {name}: {why}")


def _print_ab(store: Store, run_id: str) -> None:
    from harness.checks.arms import METRICS, summarize

    arm_stats, comparisons = summarize(store, run_id)
    missing = [m for m in METRICS if m.name not in {s.metric for s in arm_stats}]
    if not arm_stats:
        print("A/B: no complete period with samples yet")
        return
    print("A/B summary (unit: a block = one period of each arm; 95% t-intervals over blocks; "
          "differences paired within blocks):")
    for s in arm_stats:
        print(f"  {s.metric:24} {s.arm:10} blocks={s.blocks:3} mean={s.mean:.6g} {s.ci_text()}")
    for c in comparisons:
        if c.blocks == 0:
            print(f"  {c.metric:24} {c.arm_a}-{c.arm_b}: not compared: no block measured both arms")
            continue
        p = f" paired t p={c.p_value:.3g}" if c.blocks >= 2 else ""
        print(f"  {c.metric:24} {c.arm_a}-{c.arm_b}: diff={c.diff:.6g} {c.ci_text()} "
              f"over {c.blocks} paired block{'' if c.blocks == 1 else 's'}{p}")
    for m in missing:
        print(f"  {m.name:24} not measured: no {m.kind} events in any period")


def _export(store: Store, path: Path, run_id: str | None) -> None:
    from harness.store.export import export_runs

    n = export_runs(store, path, run_id=run_id)
    print(f"exported {n} KIST runs to {path}")


def _print_store(store: Store, args: argparse.Namespace) -> None:
    kinds = store.kinds()
    print(f"{args.out}: {sum(kinds.values())} records: "
          + ", ".join(f"{k}={n}" for k, n in sorted(kinds.items())))
    runs = sorted({ctx.run_id for _id, ctx in store.contexts()})
    for run_id in runs if args.run_id is None else [args.run_id]:
        if any(ctx.run_id == run_id and ctx.arm != "-" for _i, ctx in store.contexts()):
            print(f"run {run_id}:")
            _print_ab(store, run_id)
    if args.export_runs:
        _export(store, args.export_runs, args.run_id)
