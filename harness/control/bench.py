"""Benchmark: KIST_RUN events per second from the socket to the committed store.

    python -m harness.control.bench [--events 20000] [--workers 0,1,2] [--records small,sim]
                                    [--query-records 1000000]

Each configuration runs in a fresh process (so peak RSS is its own): a replay control
port (``replayport``) streams KIST_RUN lines as fast as the socket takes them into the
real collector (stem reader → bounded buffer → writer → kist_reference.trace parse →
SQLite WAL, synchronous=FULL). Reported: events/s from the first line sent to the last
commit, shed events, peak RSS; then per-stage CPU costs, which say what bounds it.
Record sizes: ``small`` is the example run of docs/trace-format.md (15 steps); ``sim`` are runs
of kist_reference.recorder.SimRelay with 20 channels (~190 steps, ~3.4 kB per line).
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
from pathlib import Path

SMALL = ('V=1 RUN={i} SCHED=KIST T0=1000000 TI=1001500 T1=1009000 IVAL=2 FACTOR=0x1p+0 NOKS=0 HW=32768 '
         'EWMAF=0x1.965fea53d6e3dp-1 TICKLEN=10 NPEND=2 CHANS=5:1:1:0:8688:0:P,9:1:1:0:5792:0:P '
         'MUX=1:0:0:40:1,2:0:0:40:1 HEAP=2147483650:0x1p+0:40:1,2147483651:0x1.8p+1:40:2 '
         'SOCK=T/4/2/1448/0,T/2/0/1448/0 STEPS=p:5,c:5:1,f:5:2147483650:40:1200,k:5:2,p:9,s:5:514:0,c:9:1,'
         'f:9:2147483651:40:1201,k:9:4,p:9,c:9:1,f:9:2147483651:40:1201,k:9:2,W:9:1028:0,W:5:514:0 READD= '
         'FINAL= DIFF=0 NEXT=-1')


def _lines(kind: str, n: int) -> list[str]:
    """n distinct lines at most 500: the replay repeats them, so the benchmark's own data
    stays small next to what it measures (peak RSS)."""
    n = min(n, 500)
    if kind == "small":
        return [f"650 KIST_RUN {SMALL.format(i=i)}" for i in range(n)]
    from kist_reference import trace
    from kist_reference.recorder import SimRelay

    return [f"650 {trace.to_wire(r)}" for r in SimRelay(seed=1, n_channels=20).records(n)]


def _maxrss_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def run_one(kind: str, workers: int, n: int, rate: float | None) -> dict[str, float]:
    """One configuration, in this process; returns the figures."""
    from harness.control.auth import Credentials
    from harness.control.collector import CollectConfig, Collector
    from harness.control.replayport import ReplaySpec, replay_port
    from harness.control.store import open_store
    from harness.control.transport import TcpTransport

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
        started = rp.first_sent_at or end
        stored, shed, errors = collector.writer.events, collector.buffer.shed, collector.writer.errors
        high_water = collector.buffer.high_water
        collector.stop()
        th.join(60)
        db_mb = sum(f.stat().st_size for f in Path(tmp).iterdir()) / 2**20
    return {"stem_queue_high_water": stem_high, "events": n, "stored": stored, "shed": shed, "errors": errors,
            "seconds": end - started, "events_per_s": stored / (end - started),
            "queue_high_water": high_water, "peak_rss_mb": _maxrss_mb(resource.RUSAGE_SELF),
            "rss_growth_mb": _maxrss_mb(resource.RUSAGE_SELF) - base_rss,
            "worker_peak_rss_mb": _maxrss_mb(resource.RUSAGE_CHILDREN), "store_mb": db_mb}


def stage_costs(kind: str, n: int = 2000) -> dict[str, float]:
    """CPU microseconds per event for each stage, one thread, no contention."""
    import stem.socket

    from harness.control.events import parse_run_payload, to_record
    from harness.control.records import Context
    from harness.control.store import Store

    lines = (_lines(kind, n) * (n // 500 + 1))[:n]
    data = "".join(line + "\r\n" for line in lines).encode()
    out = {}
    t = time.process_time()
    f = io.BytesIO(data)
    msgs = [stem.socket.recv_message(f) for _ in range(n)]
    out["stem_read_us"] = (time.process_time() - t) / n * 1e6
    t = time.process_time()
    for line in lines:
        parse_run_payload(line[len("650 KIST_RUN "):])
    out["trace_parse_us"] = (time.process_time() - t) / n * 1e6
    t = time.process_time()
    recs = [to_record(m, 0.0) for m in msgs]
    out["stem_event_and_parse_us"] = (time.process_time() - t) / n * 1e6
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "s.db")
        ctx = Context("bench")
        t = time.process_time()
        for k in range(0, n, 500):
            store.write_batch([(ctx, r) for r in recs[k:k + 500]])
        out["store_us"] = (time.process_time() - t) / n * 1e6
        store.close()
    out["steps_per_record"] = statistics.fmean(line.count(",", line.find("STEPS=")) for line in lines[:50])
    return out


def query_bench(n: int) -> dict[str, float]:
    """A day of A/B records (144 ten-minute periods, n KIST_OVERHEAD + BW each second):
    how long the per-arm summary and a one-day CDF query take."""
    import random

    from harness.control.records import Context, Kind, Record
    from harness.control.store import Store
    from harness.control.summary import summarize

    rng = random.Random(1)
    t0, period = 1.7e9, 600.0
    with tempfile.TemporaryDirectory(prefix="kist-qbench-") as tmp:
        store = Store(Path(tmp) / "q.db")
        per = n // 144
        for p_ in range(144):
            arm = ("KIST", "Vanilla")[p_ % 2]
            ctx = Context("day", arm=arm)
            batch = [(ctx, Record(Kind.ARM, t0 + p_ * period, {"arm": arm}))]
            batch += [(ctx, Record("KIST_OVERHEAD", t0 + p_ * period + i * period / per,
                                   {"run": i, "sched": arm, "t0_ns": 0, "pending": rng.randint(1, 40),
                                    "sockets": 20, "sock_ns": rng.randint(10000, 30000),
                                    "run_ns": rng.randint(1000, 90000), "cells": 50, "writes": 5,
                                    "bytes": 25000, "diff_ms": 0, "next_us": 2000}))
                      for i in range(per)]
            batch += [(ctx, Record("BW", t0 + p_ * period + i, {"read": 1, "written": rng.randint(0, 10**7)}))
                      for i in range(int(period))]
            store.write_batch(batch)
        store.write_batch([(Context("day"), Record(Kind.END, t0 + 144 * period, {}))])
        total = store.count()
        t = time.perf_counter()
        summarize(store, "day")
        summary_s = time.perf_counter() - t
        t = time.perf_counter()
        rows = store.db.execute("SELECT json_extract(data, '$.pending') FROM records "
                                "WHERE kind='KIST_OVERHEAD' AND ts >= ? AND ts < ?", (t0, t0 + 86400)).fetchall()
        cdf_s = time.perf_counter() - t
        store.close()
    return {"records": total, "summary_s": summary_s, "cdf_rows": len(rows), "cdf_query_s": cdf_s}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=20000)
    p.add_argument("--workers", default="0,1,2")
    p.add_argument("--records", default="small,sim")
    p.add_argument("--rate", type=float, help="pace the replay at this many events/s")
    p.add_argument("--query-records", type=int, default=0,
                   help="also time report queries on a day of this many KIST_OVERHEAD records")
    p.add_argument("--one", nargs=2, metavar=("RECORDS", "WORKERS"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one[0], int(args.one[1]), args.events, args.rate)))
        return 0
    if args.query_records:
        q = query_bench(args.query_records)
        print(f"[query] a day of {q['records']} records (KIST_OVERHEAD + BW): per-arm A/B summary {q['summary_s']:.2f} s, "
              f"one-day CDF query ({q['cdf_rows']} values) {q['cdf_query_s']:.2f} s")
    best = 0.0
    for kind in filter(None, args.records.split(",")):
        costs = stage_costs(kind)
        print(f"[{kind}] CPU per event: " + ", ".join(f"{k}={v:.1f}" for k, v in costs.items()))
        for w in (int(x) for x in args.workers.split(",")):
            cmd = [sys.executable, "-m", "harness.control.bench", "--one", kind, str(w),
                   "--events", str(args.events)] + (["--rate", str(args.rate)] if args.rate else [])
            res = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if res.returncode != 0:
                print(f"[{kind}] workers={w}: failed\n{res.stderr[-2000:]}")
                continue
            r = json.loads(res.stdout.strip().splitlines()[-1])
            print(f"[{kind}] parse_workers={w}: {r['events_per_s']:.0f} events/s committed "
                  f"({r['stored']} in {r['seconds']:.2f} s, shed {r['shed']}, errors {r['errors']}), "
                  f"queue high water {r['queue_high_water']} (stem's {r['stem_queue_high_water']}), peak RSS {r['peak_rss_mb']:.0f} MB "
                  f"(+{r['rss_growth_mb']:.0f}), worker peak RSS {r['worker_peak_rss_mb']:.0f} MB, "
                  f"store {r['store_mb']:.1f} MB")
            if kind == "small":
                best = max(best, r["events_per_s"])
    print(f"kist_run_events_per_s={best:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
