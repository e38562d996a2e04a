"""A researcher's series on top of the project's (``run --patches DIR``): order, names, digest."""

from __future__ import annotations

from pathlib import Path

from harness import build

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "docs" / "examples" / "kist-sndbuf-limit"


def test_the_example_series_loads_with_its_dep3_header() -> None:
    extra = build.load_series(EXAMPLE)
    assert [p.name for p in extra.patches] == ["0001-Limit-KIST-writes-by-send-buffer-space-and-congestio.patch"]
    assert extra.patches[0].description == "Limit KIST writes by send-buffer space and congestion window"


def test_extra_patches_apply_after_the_series_and_change_the_digest() -> None:
    base = build.load_series(ROOT / "patches")
    stacked = build.stack_series(base, build.load_series(EXAMPLE))
    assert stacked.patches[: len(base.patches)] == base.patches
    assert stacked.patches[-1].name == "kist-sndbuf-limit/0001-Limit-KIST-writes-by-send-buffer-space-and-congestio.patch"
    assert stacked.patches[-1].path == EXAMPLE / "0001-Limit-KIST-writes-by-send-buffer-space-and-congestio.patch"
    assert stacked.suites == base.suites
    assert stacked.digest != base.digest  # another binary: another cache entry
    assert build.cache_key("x", stacked, ()) != build.cache_key("x", base, ())


def test_an_empty_extra_series_is_the_series_itself(tmp_path: Path) -> None:
    base = build.load_series(ROOT / "patches")
    assert build.stack_series(base, build.load_series(tmp_path)) is base
