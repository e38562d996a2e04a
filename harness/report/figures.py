"""Paper-style figures: empirical CDFs per arm, the way "Tor's Been KIST" draws them.

One function per figure kind; each takes plain numbers grouped by curve label (drawn in
the mapping's order) and writes one PNG. Two readings stay easy however many variants a
run has: the hue says the arm (KIST red, Vanilla blue), the line style (the marker, in a
scatter) says the variant (solid for the base condition), so KIST against Vanilla is two
colours of one style and a variant against the base is two styles of one colour.
matplotlib is imported inside, with the Agg backend, so importing the harness never needs
a display.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from harness.report.data import Distribution
from harness.store.aggregates import Histogram


def _plt():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, ax, path: Path, title: str, xlabel: str, ylabel: str, legend_at: str) -> Path:  # type: ignore[no-untyped-def]
    """Labels, grid, legend and the PNG: what every panel shares."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc=legend_at)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def ecdf(values: Distribution) -> tuple[list[float], list[float]]:
    """Sorted values and their cumulative fractions (the step points of the empirical CDF)."""
    if isinstance(values, Histogram):
        return values.cdf()  # upper bin edges: exact at every edge
    xs = sorted(v for v in values if not math.isnan(v))
    n = len(xs)
    return xs, [(i + 1) / n for i in range(n)]


_ARM_COLOURS = {"KIST": "#d62728", "Vanilla": "#1f77b4", "KISTLite": "#2ca02c"}
_OTHER_COLOURS = ("#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
_VARIANT_LINES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)))
_VARIANT_MARKERS = ("o", "^", "s", "D", "v")

Styles = Mapping[str, tuple[str, int]]  # curve label -> (arm, variant index in run order; 0 = base)


def _style(label: str, styles: Styles | None) -> tuple[str | None, object, str]:
    """(colour, line style, marker) of a curve; without styles, matplotlib's colour cycle."""
    if not styles or label not in styles:
        return None, "-", "o"
    arm, variant = styles[label]
    others = sorted({a for a, _ in styles.values() if a not in _ARM_COLOURS})
    colour = _ARM_COLOURS.get(arm) or _OTHER_COLOURS[others.index(arm) % len(_OTHER_COLOURS)]
    return (colour, _VARIANT_LINES[variant % len(_VARIANT_LINES)],
            _VARIANT_MARKERS[variant % len(_VARIANT_MARKERS)])


def cdf_figure(
    path: Path,
    curves: Mapping[str, Distribution],
    *,
    title: str,
    xlabel: str,
    logx: bool = False,
    marker_x: float | None = None,
    marker_label: str = "",
    styles: Styles | None = None,
) -> Path | None:
    """One CDF panel with a curve per label; None (no file) when there is nothing to draw."""
    drawable = {k: v for k, v in curves.items() if len(v) > 0}
    if not drawable:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.0, 3.6), dpi=110)
    for label, values in drawable.items():
        xs, ys = ecdf(values)
        if logx:
            pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if x > 0]
            xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
        colour, style, _ = _style(label, styles)
        ax.step(xs, ys, where="post", color=colour, linestyle=style, label=f"{label} (n={len(values)})")
    if marker_x is not None:
        ax.axvline(marker_x, color="grey", linewidth=0.8, linestyle=":")
        if marker_label:
            ax.text(marker_x, 0.02, f" {marker_label}", color="grey", fontsize=7, rotation=90, va="bottom")
    if logx:
        ax.set_xscale("log")
    ax.set_ylim(0, 1.0)
    return _save(plt, fig, ax, path, title, xlabel, "cumulative fraction", "lower right")


def scatter_figure(
    path: Path,
    points: Mapping[str, Sequence[tuple[float, float]]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    slope: float | None = None,
    slope_label: str = "",
    styles: Styles | None = None,
) -> Path | None:
    """Scatter per label, with an optional reference line y = slope * x (e.g. the paper's 1.08 µs/socket)."""
    drawable = {k: v for k, v in points.items() if len(v) > 0}
    if not drawable:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.0, 3.6), dpi=110)
    xmax = 0.0
    for label, pts in drawable.items():
        xs = [p[0] for p in pts]
        ys = [p[1] for p in pts]
        xmax = max(xmax, max(xs))
        colour, _, marker = _style(label, styles)
        ax.scatter(xs, ys, s=6, alpha=0.5, color=colour, marker=marker, label=label)
    if slope is not None and xmax > 0:
        ax.plot([0, xmax], [0, slope * xmax], color="black", linewidth=0.8, linestyle="--", label=slope_label)
    return _save(plt, fig, ax, path, title, xlabel, ylabel, "upper left")
