"""Repeated trials of one scenario -> the KIST vs Vanilla table with 95 % intervals.

``kist-harness run`` is one trial: one network, one arm order, one minute of traffic per
phase. A table from one trial has no interval, and one that disagrees with the paper cannot
say whether it is noise. This module reads k trials' stores (``kist-harness run --seed i
--out DIR_i``, i = 1..k: same scenario, fresh keys and circuits, another arm order) and
gives, per metric, the mean over trials of each trial's median with its t-interval, and the
KIST - Vanilla difference paired by trial (both arms ran interleaved on the same relays in
the same trial, so the trial-to-trial spread they share cancels). Trials of one network are
not independently *sampled* networks (Jansen et al.'s point, harness.experiments.grid does
that): the intervals speak for this network, not for Tor.

    python -m harness.experiments.trials runs/t1 runs/t2 runs/t3 ... [--figure F.png]
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.errors import InputError
from harness.experiments import claims, results, stats
from harness.experiments.claims import KIST, VANILLA, NetworkResult

# (row label, metric, quantile or None for a per-trial scalar, unit format)
ROWS: tuple[tuple[str, str, float | None, str], ...] = (
    ("TTFB 320 KiB, median (s)", "ttfb_320KiB", 0.5, "{:.3g}"),
    ("TTLB 320 KiB, median (s)", "ttlb_320KiB", 0.5, "{:.3g}"),
    ("TTLB 320 KiB, p90 (s)", "ttlb_320KiB", 0.9, "{:.3g}"),
    ("TTLB 5 MiB, median (s)", "ttlb_5MiB", 0.5, "{:.3g}"),
    ("relay goodput, mean (KiB/s)", "goodput_kib_s", None, "{:.0f}"),
    ("Tor queue time per cell, median (ms)", "tor_queue_ms", 0.5, "{:.3g}"),
    ("kernel queue time, median (ms)", "kernel_queue_ms", 0.5, "{:.3g}"),
    ("kernel queue time, p90 (ms)", "kernel_queue_ms", 0.9, "{:.3g}"),
)


@dataclass(frozen=True)
class Row:
    label: str
    kist: stats.Interval
    vanilla: stats.Interval
    difference: stats.Interval
    fmt: str

    def cells(self) -> list[str]:
        diff = self.difference.text(self.fmt)
        if self.difference.k >= 2:
            diff += " (KIST lower)" if self.difference.high < 0 else " (KIST higher)" if self.difference.low > 0 \
                else " (no difference shown)"
        return [self.label, self.kist.text(self.fmt), self.vanilla.text(self.fmt), diff]


def load(dirs: Sequence[Path]) -> list[NetworkResult]:
    """Each trial's per-arm results (network = trial1, trial2, ...), in the order given."""
    from harness.report.read import read_store

    out: list[NetworkResult] = []
    for i, d in enumerate(dirs, 1):
        store = d / "store.sqlite" if d.is_dir() else d
        if not store.is_file():
            raise InputError(f"trial {i}: {d} holds no store.sqlite; pass the --out directories of "
                             "`kist-harness run --seed N --out DIR` runs (or their store.sqlite files)")
        out.extend(results.from_report(read_store(store), f"trial{i}", condition="base"))
    return out


def _by_trial(rs: Sequence[NetworkResult], arm: str, metric: str) -> dict[str, list[float]]:
    return {r.network: list(r.samples.get(metric, ())) for r in rs if r.arm == arm}


def _scalar_by_trial(rs: Sequence[NetworkResult], arm: str, metric: str) -> dict[str, float]:
    return {r.network: r.scalars.get(metric, math.nan) for r in rs if r.arm == arm}


def table(rs: Sequence[NetworkResult]) -> list[Row]:
    rows = []
    for label, metric, q, fmt in ROWS:
        if q is None:
            k, v = _scalar_by_trial(rs, KIST, metric), _scalar_by_trial(rs, VANILLA, metric)
            rows.append(Row(label, stats.mean_interval(list(k.values())), stats.mean_interval(list(v.values())),
                            stats.scalar_difference(k, v), fmt))
            continue
        ks, vs = _by_trial(rs, KIST, metric), _by_trial(rs, VANILLA, metric)
        kq = [stats.order_quantile(x, q) for x in ks.values() if x]
        vq = [stats.order_quantile(x, q) for x in vs.values() if x]
        rows.append(Row(label, stats.mean_interval(kq), stats.mean_interval(vq),
                        stats.paired_difference(ks, vs, q), fmt))
    return rows


def markdown(rows: Sequence[Row], k: int) -> str:
    head = ["metric (mean over trials [95 % interval])", f"KIST (k={k})", f"Vanilla (k={k})",
            "KIST - Vanilla, paired by trial"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def mechanisms(dirs: Sequence[Path]) -> str:
    """Two per-trial shares of the KIST arm, with intervals over trials: how often the socket
    limit bound (harness.report.limitbound) and how many flushed cells its runs left in the
    outbuf (harness.report.outbufleft). They tell where KIST's queue formed."""
    from harness.report import limitbound, outbufleft

    bound, left = [], []
    for d in dirs:
        store = d / "store.sqlite" if d.is_dir() else d
        lb = [r for r in limitbound.limit_bound(store) if r.arm == "KIST"]
        ob = [r for r in outbufleft.outbuf_left(store) if r.arm == "KIST"]
        if lb and (runs := sum(r.runs for r in lb)):
            bound.append(100.0 * sum(r.bound for r in lb) / runs)
        if ob and (cells := sum(r.cells for r in ob)):
            left.append(100.0 * sum(r.left for r in ob) / cells)
    lines = ["| KIST arm, per trial (mean [95 % interval]) | share |", "|---|---|",
             f"| runs in which a socket reached its limit (%) | {stats.mean_interval(bound).text('{:.1f}')} |",
             f"| flushed cells its runs left in the outbuf (%) | {stats.mean_interval(left).text('{:.1f}')} |"]
    return "\n".join(lines) + "\n"


def figure(rs: Sequence[NetworkResult], path: Path, metric: str = "ttlb_320KiB", title: str = "") -> None:
    from harness.experiments.plot import cdf_band_figure

    what, _, size = metric.partition("_")
    label = {"ttlb": "time to last byte", "ttfb": "time to first byte"}.get(what, what) + f", {size} (s)"
    arms = [(name, list(_by_trial(rs, arm, metric).values())) for arm, name in ((KIST, "KIST"), (VANILLA, "Vanilla"))]
    cdf_band_figure(str(path), arms, xlabel=label, title=title or "mean CDF over trials, 95 % band")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.experiments.trials", description=__doc__.split("\n")[0])
    p.add_argument("trials", nargs="+", type=Path, help="--out directories (or stores) of kist-harness run")
    p.add_argument("--figure", type=Path, help="also write the banded TTLB 320 KiB CDF here (PNG)")
    p.add_argument("--title", default="", help="the figure's title")
    args = p.parse_args(argv)
    try:
        rs = load(args.trials)
    except InputError as exc:
        print(f"trials: {exc}", file=sys.stderr)
        return 2
    print(markdown(table(rs), len(args.trials)))
    print(mechanisms(args.trials))
    verdicts = [v for v in claims.judge_all(rs) if v.outcome is not claims.Outcome.NO_DATA]
    if verdicts:
        print(claims.markdown_table(verdicts))
    if args.figure:
        figure(rs, args.figure, title=args.title)
        print(f"figure: {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
