"""Hypothesis drives the fuzz targets of harness.fuzz: no input escapes its documented error.

The benchmark (`python -m harness.fuzz`) feeds 10^5 inputs; here each target gets a few
hundred, drawn by Hypothesis (which shrinks an escape to a small reproducer), in seconds.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.fuzz.targets import Target, all_targets

EXAMPLES = {"events": 300, "records": 150, "scenario": 200, "inventory": 200, "store": 25}


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Target]]:
    yield {t.name: t for t in all_targets(tmp_path_factory.mktemp("fuzz"))}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_no_mutated_input_escapes(targets: dict[str, Target], name: str) -> None:
    target = targets[name]

    @settings(max_examples=EXAMPLES[name], deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(st.randoms(use_true_random=False))
    def check(rng: random.Random) -> None:
        with contextlib.suppress(target.documented):
            target.feed(rng)

    check()


def test_targets_are_seeded_from_real_data(targets: dict[str, Target]) -> None:
    """A target with no seeds would fuzz nothing and pass: each accepts some inputs."""
    for name, target in targets.items():
        rng = random.Random(0)
        accepted = 0
        for _ in range(200 if name != "store" else 20):
            with contextlib.suppress(target.documented):
                accepted += target.feed(rng)
        assert accepted > 0, f"{name}: no mutated input was accepted; are its seeds there?"


def test_escape_counting_sees_an_undocumented_error(tmp_path: Path) -> None:
    from harness.fuzz.__main__ import Tally, run_target

    def feed(rng: random.Random) -> bool:
        return 1 / 0 > 0  # what an escape looks like

    tally = Tally()
    run_target(Target("t", "a target that always escapes", feed, (ValueError,)), 3, random.Random(0), tally)
    (kind, _where), = tally.escapes
    assert kind == "ZeroDivisionError" and tally.escapes[(kind, _where)][0] == 3
