"""Benchmark: KIST_RUN events per second from the socket to the committed store.

    python -m harness.control.bench [--events 20000] [--workers 0,1,2] [--records small,real,sim]
                                    [--repeat 3]
    python -m harness.control.bench --day [--day-rate 50] [--day-hours 24] [--day-store PATH]
    python -m harness.control.bench --fleet 10,50 [fleetbench options]   (harness.control.fleetbench)

Each configuration runs ``--repeat`` times, each in a fresh process (so peak RSS is its
own): a replay control port (``replayport``) streams KIST_RUN lines as fast as the socket
takes them into the real collector (stem reader → bounded buffer → writer →
kist_reference.trace parse → SQLite WAL, synchronous=FULL, with its per-minute
aggregates). Reported: the median events/s from the first line sent to the last commit,
the CPU per event of the collector's process (the pipeline is bound by the GIL: this is
what to compare across machines and loads), shed events, peak RSS; then per-stage CPU
costs, which say what bounds it. ``--day`` instead times the report's queries on a day of
records (``day_bench``).
Record sizes: ``small`` is the example run of docs/trace-format.md (15 steps); ``real`` the
154 runs a patched Tor 0.4.9.11 relay recorded (tests/data, ~70 steps); ``sim`` are runs of
kist_reference.recorder.SimRelay with 20 channels (~190 steps, ~3.4 kB per line).
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from harness.store import queries
from harness.store.db import Store
from harness.store.records import BW, KIST_OVERHEAD, KIST_QTIME, KIST_RUN, Kind

SMALL = ('V=1 RUN={i} SCHED=KIST T0=1000000 TI=1001500 T1=1009000 IVAL=2 FACTOR=0x1p+0 NOKS=0 HW=32768 '
         'EWMAF=0x1.965fea53d6e3dp-1 TICKLEN=10 NPEND=2 CHANS=5:1:1:0:8688:0:P,9:1:1:0:5792:0:P '
         'MUX=1:0:0:40:1,2:0:0:40:1 HEAP=2147483650:0x1p+0:40:1,2147483651:0x1.8p+1:40:2 '
         'SOCK=T/4/2/1448/0,T/2/0/1448/0 STEPS=p:5,c:5:1,f:5:2147483650:40:1200,k:5:2,p:9,s:5:514:0,c:9:1,'
         'f:9:2147483651:40:1201,k:9:4,p:9,c:9:1,f:9:2147483651:40:1201,k:9:2,W:9:1028:0,W:5:514:0 READD= '
         'FINAL= DIFF=0 NEXT=-1')


REAL = Path(__file__).resolve().parents[2] / "tests" / "data" / "real-tor-0.4.9.11-runs.jsonl"


def _lines(kind: str, n: int) -> list[str]:
    """n distinct lines at most 500: the replay repeats them, so the benchmark's own data
    stays small next to what it measures (peak RSS)."""
    n = min(n, 500)
    if kind == "small":
        return [f"650 KIST_RUN {SMALL.format(i=i)}" for i in range(n)]
    from kist_reference import trace

    if kind == "real":
        recs = list(trace.read_records(REAL))
        return [f"650 {trace.to_wire(recs[i % len(recs)])}" for i in range(n)]
    from kist_reference.recorder import SimRelay

    return [f"650 {trace.to_wire(r)}" for r in SimRelay(seed=1, n_channels=20).records(n)]


def _maxrss_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def run_one(kind: str, workers: int, n: int, rate: float | None) -> dict[str, float]:
    """One configuration, in this process; returns the figures."""
    from harness.control.auth import Credentials
    from harness.control.collector import CollectConfig, Collector
    from harness.control.replayport import ReplaySpec, replay_port
    from harness.control.transport import TcpTransport
    from harness.store.db import open_store

    lines = _lines(kind, n)
    if n % len(lines):
        raise SystemExit(f"--events must be a multiple of {len(lines)}")
    base_rss = _maxrss_mb(resource.RUSAGE_SELF)
    with tempfile.TemporaryDirectory(prefix="kist-bench-") as tmp, \
            replay_port(ReplaySpec(lines, repeat=n // len(lines), rate=rate)) as rp, \
            open_store(Path(tmp) / "bench.db") as store:
        config = CollectConfig(run_id="bench", duration_s=None, snapshot_every_s=3600, stall_s=3600,
                               parse_workers=workers)
        collector = Collector(TcpTransport("127.0.0.1", rp.port), Credentials(), store, config)
        th = threading.Thread(target=collector.run, daemon=True)
        th.start()
        deadline = time.monotonic() + 600
        cpu0 = time.process_time()
        stem_high = 0
        while time.monotonic() < deadline:
            done = collector.writer.events + collector.buffer.shed
            if done >= n:
                break
            controller = collector._controller
            if controller is not None:
                stem_high = max(stem_high, controller._event_queue.qsize())
            time.sleep(0.005)
        end = time.monotonic()
        cpu = time.process_time() - cpu0
        started = rp.first_sent_at or end
        stored, shed, errors = collector.writer.events, collector.buffer.shed, collector.writer.errors
        high_water = collector.buffer.high_water
        collector.stop()
        th.join(60)
        db_mb = sum(f.stat().st_size for f in Path(tmp).iterdir()) / 2**20
    return {"stem_queue_high_water": stem_high, "events": n, "stored": stored, "shed": shed, "errors": errors,
            "seconds": end - started, "events_per_s": stored / (end - started),
            "cpu_us_per_event": cpu / max(stored, 1) * 1e6,
            "queue_high_water": high_water, "peak_rss_mb": _maxrss_mb(resource.RUSAGE_SELF),
            "rss_growth_mb": _maxrss_mb(resource.RUSAGE_SELF) - base_rss,
            "worker_peak_rss_mb": _maxrss_mb(resource.RUSAGE_CHILDREN), "store_mb": db_mb}


def stage_costs(kind: str, n: int = 2000) -> dict[str, float]:
    """CPU microseconds per event for each stage of the writer's path, one thread, no contention."""
    import stem.socket

    from harness.control.buffer import EventBuffer
    from harness.control.writer import RawEvent, StoreWriter
    from harness.store.db import Store
    from harness.store.records import Context
    from kist_reference import trace

    lines = (_lines(kind, n) * (n // 500 + 1))[:n]
    data = "".join(line + "\r\n" for line in lines).encode()
    out = {}
    t = time.process_time()
    f = io.BytesIO(data)
    msgs = [stem.socket.recv_message(f) for _ in range(n)]
    out["stem_read_us"] = (time.process_time() - t) / n * 1e6
    t = time.process_time()
    for line in lines:
        trace.parse_wire(line[len("650 KIST_RUN "):])
    out["trace_parse_us"] = (time.process_time() - t) / n * 1e6
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "s.db")
        ctx = Context("bench")
        writer = StoreWriter(store, EventBuffer(1))  # not started: its conversion only
        t = time.process_time()
        recs = writer._convert([RawEvent(ctx, 0.0, m) for m in msgs])
        out["writer_convert_us"] = (time.process_time() - t) / n * 1e6
        t = time.process_time()
        for k in range(0, n, 500):
            store.write_batch(recs[k:k + 500])
        out["store_us"] = (time.process_time() - t) / n * 1e6
        store.close()
    out["steps_per_record"] = statistics.fmean(line.count(",", line.find("STEPS=")) for line in lines[:50])
    return out


KIST_RUN_EVERY = 50  # the day store holds every 50th run's KIST_RUN (all of them: ~1.4 kB x 4.3 M a day)


def _day_records(rate: float, seconds: int, seed: int = 1) -> Iterator[tuple[float, str, dict[str, Any], str | None]]:
    """A relay's records in time order: per scheduler run a KIST_OVERHEAD and a KIST_QTIME,
    for every ``KIST_RUN_EVERY``-th run a KIST_RUN (the recorded runs of tests/data), one BW
    a second, an A/B switch every 10 minutes (KIST/Vanilla); values drawn from pools so that
    synthesis costs little next to the store."""
    import random

    from harness.store.aggregates import run_fields
    from kist_reference import trace

    rng = random.Random(seed)
    pool = 1024
    runs = [trace.to_wire(r).split(" ", 1)[1] for r in trace.read_records(REAL)]
    fields = [run_fields(trace.parse_wire(r)) for r in runs]
    overhead = [{"run": 0, "sched": "", "t0_ns": 0, "pending": p, "sockets": p,
                 "sock_ns": int(p * rng.uniform(600, 1600)), "run_ns": rng.randint(5_000, 400_000),
                 "cells": rng.randint(1, 120), "writes": rng.randint(1, 10), "bytes": rng.randint(514, 60_000),
                 "diff_ms": 0, "next_us": 2000}
                for p in (max(1, int(rng.lognormvariate(2.5, 0.8))) for _ in range(pool))]
    qtime = [",".join(f"{rng.randint(1, 40)}:{rng.randint(1, 1 << 31)}:{int(rng.lognormvariate(14, 1.5))}:"
                      f"{rng.choice(['-', str(int(rng.lognormvariate(11, 1)))])}" for _ in range(rng.randint(0, 20)))
             for _ in range(pool)]
    period = 600
    step = 1.0 / rate
    t0 = 1.7e9
    run = 0
    for start in range(0, seconds, period):
        arm = ("KIST", "Vanilla")[(start // period) % 2]
        yield (t0 + start, str(Kind.ARM), {"arm": arm}, None)
        for sec in range(start, min(start + period, seconds)):
            yield (t0 + sec, BW, {"read": 10**6, "written": rng.randint(0, 2 * 10**7)}, None)
            ts = t0 + sec
            while ts < t0 + sec + 1:
                run += 1
                i = run % pool
                yield (ts, KIST_OVERHEAD, {**overhead[i], "run": run, "sched": arm}, None)
                yield (ts, KIST_QTIME, {"run": run, "sched": arm, "t0_ns": 0, "n": qtime[i].count(",") + 1,
                                          "cells": qtime[i]}, None)
                if run % KIST_RUN_EVERY == 0:
                    k = run % len(runs)
                    yield (ts, KIST_RUN, {**fields[k], "run": run}, runs[k])
                ts += step


def day_bench(rate: float, hours: float, path: Path) -> dict[str, float]:
    """Build a store of ``hours`` of records at ``rate`` runs/s into ``path`` (kept if it
    exists: a second call only times the queries), then time the report's queries on it,
    raw-record reads against the aggregates."""
    from harness.store.db import Store
    from harness.store.records import Context, Record

    out: dict[str, float] = {}
    if not path.exists():
        t = time.perf_counter()
        with Store(path) as store:
            batch: list[tuple[Context, Record]] = []
            ctxs = {arm: Context("day", "F" * 40, "0.4.9.11", "bench", arm) for arm in ("-", "KIST", "Vanilla")}
            ctx = ctxs["-"]
            for ts, kind, data, raw in _day_records(rate, int(hours * 3600)):
                if kind == Kind.ARM:
                    ctx = ctxs[data["arm"]]
                batch.append((ctx, Record(kind, ts, data, raw)))
                if len(batch) >= 5000:
                    store.write_batch(batch)
                    batch = []
            store.write_batch(batch)
        out["build_s"] = time.perf_counter() - t
    out["store_mb"] = sum(f.stat().st_size for f in path.parent.glob(path.name + "*")) / 2**20
    with Store(path, readonly=True) as store:
        out["records"] = store.count()
        out["runs"] = store.count(KIST_OVERHEAD)
        for name, query in _day_queries(store).items():
            t = time.perf_counter()
            query()
            out[name] = time.perf_counter() - t
    return out


def _day_queries(store: Store) -> dict[str, Callable[[], object]]:
    """The report's panels, each as the aggregates answer it and (``raw_*``) as reading the
    records does (what harness/report/read.py does below its raw-records limit: every record decoded)."""
    from harness.checks.arms import summarize

    def raw(kind: str, field: str) -> Callable[[], object]:
        return lambda: sum(1 for _c, r in store.records(kind) if r.data.get(field) is not None)

    return {
        "agg_goodput_cdf_s": lambda: store.histogram("goodput_Bps"),
        "agg_queue_time_cdf_s": lambda: store.histogram("queue_ms"),
        "agg_pending_cdf_s": lambda: store.histogram("sockets", by=("sched",)),
        "agg_overhead_per_socket_cdf_s": lambda: store.histogram("sock_us_per_socket", by=("sched",)),
        "agg_overhead_fit_s": lambda: (store.totals("fit_pt", by=("sched",)), store.totals("fit_pp", by=("sched",))),
        "agg_runs_per_minute_s": lambda: store.minute_series("overhead_runs"),
        "agg_decisions_per_minute_s": lambda: store.minute_series("decisions"),
        "agg_goodput_per_minute_s": lambda: store.minute_series("goodput_bytes"),
        "agg_queue_cells_per_minute_s": lambda: store.minute_series("qtime_cells"),
        "ab_summary_s": lambda: summarize(store, "day"),  # collect's final per-arm summary (SQL over records)
        "kinds_s": store.kinds,  # the report's store line: a count per kind
        "first_kist_run_s": lambda: queries.interval_ms(store),  # the queue-time figure's marker
        "raw_goodput_s": raw(BW, "written"),
        "raw_overhead_s": raw(KIST_OVERHEAD, "sockets"),
        "raw_queue_time_s": raw(KIST_QTIME, "cells"),
    }


def _run_config(kind: str, workers: int, args: argparse.Namespace) -> dict[str, float] | None:
    """One configuration in a fresh process (so its peak RSS is its own)."""
    cmd = [sys.executable, "-m", "harness.control.bench", "--one", kind, str(workers),
           "--events", str(args.events)] + (["--rate", str(args.rate)] if args.rate else [])
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        print(f"[{kind}] workers={workers}: failed\n{res.stderr[-2000:]}")
        return None
    result: dict[str, float] = json.loads(res.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0].startswith("--fleet"):  # many relays into one store: its own benchmark
        from harness.control import fleetbench

        sizes = argv[0].partition("=")[2] or (argv[1] if len(argv) > 1 else "10,50")
        rest = argv[1:] if "=" in argv[0] else argv[2:]
        return fleetbench.main(["--relays", sizes, *rest])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=20000)
    p.add_argument("--workers", default="0,1,2")
    p.add_argument("--records", default="small,real,sim")
    p.add_argument("--rate", type=float, help="pace the replay at this many events/s")
    p.add_argument("--repeat", type=int, default=3, help="runs per configuration (the median is reported)")
    p.add_argument("--day", action="store_true",
                   help="instead: time the report's queries on a day of records (built once, kept in --day-store)")
    p.add_argument("--day-rate", type=float, default=50.0, help="scheduler runs per second in the day store")
    p.add_argument("--day-hours", type=float, default=24.0)
    p.add_argument("--day-store", type=Path, default=Path(tempfile.gettempdir()) / "kist-bench-day.db",
                   help="where the day store is built (reused if it exists; delete it to rebuild)")
    p.add_argument("--one", nargs=2, metavar=("RECORDS", "WORKERS"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one[0], int(args.one[1]), args.events, args.rate)))
        return 0
    if args.day:
        r = day_bench(args.day_rate, args.day_hours, args.day_store)
        print(f"[day] {args.day_hours:g} h at {args.day_rate:g} runs/s: {r['runs']:.0f} runs, {r['records']:.0f} records, "
              f"store {r['store_mb']:.0f} MB ({args.day_store})"
              + (f", built in {r['build_s']:.0f} s ({r['records'] / r['build_s']:.0f} records/s)" if "build_s" in r else ""))
        for name, value in r.items():
            if name.endswith("_s") and name != "build_s":
                print(f"[day] {name[:-2]}: {value:.3f} s")
        return 0
    best = 0.0
    for kind in filter(None, args.records.split(",")):
        costs = stage_costs(kind)
        print(f"[{kind}] CPU per event: " + ", ".join(f"{k}={v:.1f}" for k, v in costs.items()))
        for w in (int(x) for x in args.workers.split(",")):
            runs = [r for r in (_run_config(kind, w, args) for _ in range(args.repeat)) if r is not None]
            if not runs:
                continue
            rates = sorted(r["events_per_s"] for r in runs)
            median = statistics.median(rates)
            r = max(runs, key=lambda x: x["peak_rss_mb"])
            print(f"[{kind}] parse_workers={w}: {median:.0f} events/s committed, median of {len(runs)} "
                  f"(min {rates[0]:.0f}, max {rates[-1]:.0f}); CPU {statistics.median(x['cpu_us_per_event'] for x in runs):.0f} "
                  f"us/event in the collector's process; shed {sum(x['shed'] for x in runs)}, "
                  f"errors {sum(x['errors'] for x in runs)}; queue high water {r['queue_high_water']} "
                  f"(stem's {r['stem_queue_high_water']}); peak RSS {r['peak_rss_mb']:.0f} MB (+{r['rss_growth_mb']:.0f}), "
                  f"worker peak RSS {r['worker_peak_rss_mb']:.0f} MB, store {r['store_mb']:.1f} MB")
            if kind == "small":
                best = max(best, median)
    print(f"kist_run_events_per_s={best:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
