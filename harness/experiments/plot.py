"""CDFs with shaded 95 % bands across sampled networks (the report's figures), matplotlib.

The line is the per-quantile mean over networks, the band its interval (harness.experiments.
stats.quantile_band), drawn like tornettools' ``draw_cdf_ci``: x = the metric, y = the
quantile, ``fill_betweenx`` for the band. matplotlib is imported by the caller's figure, not
here at import time, so the statistics stay importable without it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from harness.experiments.stats import CONFIDENCE, PLOT_QUANTILES, QuantileBand, quantile_band


def draw_cdf_band(axis: Any, per_network: Sequence[Sequence[float]], *, label: str, color: str,
                  linestyle: str = "-", confidence: float = CONFIDENCE,
                  quantiles: Sequence[float] = PLOT_QUANTILES) -> QuantileBand:
    """Draw one arm's CDF (mean over networks) and its band on a matplotlib Axes.

    Returns the band that was drawn, so a caller can put the same numbers in a table.
    Quantiles where fewer than two networks had values get the line but no band."""
    band = quantile_band(per_network, quantiles, confidence)
    ys = list(band.quantiles)
    xs = [iv.mean for iv in band.intervals]
    k = max((iv.k for iv in band.intervals), default=0)
    axis.plot(xs, ys, color=color, linestyle=linestyle, label=f"{label} (k={k})")
    lows = [iv.low if not math.isnan(iv.low) else iv.mean for iv in band.intervals]
    highs = [iv.high if not math.isnan(iv.high) else iv.mean for iv in band.intervals]
    if k >= 2:
        axis.fill_betweenx(ys, lows, highs, color=color, alpha=0.3, linewidth=0)
    axis.set_ylim(0, 1)
    axis.set_ylabel("cumulative fraction")
    return band


def cdf_band_figure(path: str, arms: Sequence[tuple[str, Sequence[Sequence[float]]]], *, xlabel: str,
                    title: str = "", colors: Sequence[str] = ("C0", "C1", "C2", "C3")) -> dict[str, QuantileBand]:
    """Write a PNG with one banded CDF per arm; returns each arm's band by label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.4))
    out: dict[str, QuantileBand] = {}
    try:
        for (label, data), color in zip(arms, colors, strict=False):
            out[label] = draw_cdf_band(ax, data, label=label, color=color)
        ax.set_xlabel(xlabel)
        if title:
            ax.set_title(title, fontsize=10)
        ax.grid(True, linestyle=":", linewidth=0.5)
        ax.legend(fontsize=8, loc="lower right")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
    return out
