"""The banded CDF figure: the band drawn is the one computed, and a PNG is written."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from harness.experiments import plot  # noqa: E402


def test_band_is_drawn_from_the_per_network_quantiles(tmp_path: Path) -> None:
    nets = [[1.0, 2.0, 3.0], [1.5, 2.5, 3.5], [2.0, 3.0, 4.0]]
    fig, ax = plt.subplots()
    band = plot.draw_cdf_band(ax, nets, label="KIST", color="C0", quantiles=(0.0, 0.5, 0.99))
    assert len(ax.collections) == 1            # the shaded band
    line = ax.lines[0]
    assert list(line.get_xdata()) == [1.5, 2.5, 2.5]   # int(2 * 0.99) = 1: the middle value again
    assert line.get_label() == "KIST (k=3)"
    assert band.at(0.5).low < 2.5 < band.at(0.5).high
    plt.close(fig)


def test_one_network_draws_a_line_without_a_band() -> None:
    fig, ax = plt.subplots()
    plot.draw_cdf_band(ax, [[1.0, 2.0]], label="Vanilla", color="C1")
    assert len(ax.collections) == 0
    plt.close(fig)


def test_figure_file(tmp_path: Path) -> None:
    out = tmp_path / "ttlb.png"
    bands = plot.cdf_band_figure(str(out), [("KIST", [[1.0, 2.0], [1.2, 2.2]]), ("Vanilla", [[1.1, 2.5], [1.3, 2.4]])],
                                 xlabel="time to last byte (s)")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(bands) == {"KIST", "Vanilla"}
