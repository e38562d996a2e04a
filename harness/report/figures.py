"""Paper-style figures: empirical CDFs per arm, the way "Tor's Been KIST" draws them.

One function per figure kind; each takes plain numbers grouped by curve label and
writes one PNG. matplotlib is imported inside, with the Agg backend, so importing the
harness never needs a display.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

# The paper draws Vanilla/AMAP solid and KIST dashed; keep that reading habit.
_STYLES = {"Vanilla": "-", "KIST": "--", "KISTLite": ":"}


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


def ecdf(values: Sequence[float]) -> tuple[list[float], list[float]]:
    """Sorted values and their cumulative fractions (the step points of the empirical CDF)."""
    xs = sorted(v for v in values if not math.isnan(v))
    n = len(xs)
    return xs, [(i + 1) / n for i in range(n)]


def _style(label: str) -> str:
    for key, style in _STYLES.items():
        if label == key or label.startswith(key + " "):
            return style
    return "-."


def cdf_figure(
    path: Path,
    curves: Mapping[str, Sequence[float]],
    *,
    title: str,
    xlabel: str,
    logx: bool = False,
    marker_x: float | None = None,
    marker_label: str = "",
) -> Path | None:
    """One CDF panel with a curve per label; None (no file) when there is nothing to draw."""
    drawable = {k: v for k, v in curves.items() if len(v) > 0}
    if not drawable:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.0, 3.6), dpi=110)
    for label in sorted(drawable):
        xs, ys = ecdf(drawable[label])
        if logx:
            pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if x > 0]
            xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
        ax.step(xs, ys, where="post", linestyle=_style(label), label=f"{label} (n={len(drawable[label])})")
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
) -> Path | None:
    """Scatter per label, with an optional reference line y = slope * x (e.g. the paper's 1.08 µs/socket)."""
    drawable = {k: v for k, v in points.items() if len(v) > 0}
    if not drawable:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.0, 3.6), dpi=110)
    xmax = 0.0
    for label in sorted(drawable):
        xs = [p[0] for p in drawable[label]]
        ys = [p[1] for p in drawable[label]]
        xmax = max(xmax, max(xs))
        ax.scatter(xs, ys, s=6, alpha=0.5, label=label)
    if slope is not None and xmax > 0:
        ax.plot([0, xmax], [0, slope * xmax], color="black", linewidth=0.8, linestyle="--", label=slope_label)
    return _save(plt, fig, ax, path, title, xlabel, ylabel, "upper left")
