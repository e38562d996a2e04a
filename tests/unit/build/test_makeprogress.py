"""make's progress: the total from a dry run, objects built from the silent-rules lines."""

from __future__ import annotations

from harness.makeprogress import MakeProgress, planned_targets

DRY_RUN = """\
echo "  CC      " src/app/main/tor_main.o;depbase=`echo src/app/main/tor_main.o | sed 's|x|y|'`;\\
echo "  CC      " src/core/crypto/hs_ntor.o;depbase=`echo src/core/crypto/hs_ntor.o`;\\
echo "  AR      " libtor.a;rm -f libtor.a;\\
echo "  CC      " src/app/main/tor_main.o;depbase=`echo again`;\\
echo "  CCLD    " src/app/tor;gcc -o src/app/tor;\\
"""


def test_the_dry_run_counts_each_target_once() -> None:
    assert planned_targets(DRY_RUN) == 4


def test_progress_counts_built_targets_and_estimates_the_rest() -> None:
    said: list[str] = []
    meter = MakeProgress(4, said.append, every_s=0.0)
    for line in ["make  all-am", "  CC       src/app/main/tor_main.o", "gcc: warning: x",
                 "  CC       src/core/crypto/hs_ntor.o", "  AR       libtor.a"]:
        meter.line(line)
    assert len(meter.built) == 3
    assert said[-1].startswith("3/4 objects (75 %)") and "left" in said[-1]


def test_without_a_total_it_still_counts() -> None:
    meter = MakeProgress(0, lambda _t: None)
    meter.line("  CC       a.o")
    assert meter.describe().startswith("1 objects built")
