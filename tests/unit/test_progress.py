"""Step progress names the failing step and keeps the split of step times."""

from __future__ import annotations

import io

import pytest

from harness.errors import InputError, StepError
from harness.progress import Steps


def test_failure_names_the_step_and_keeps_the_error_type() -> None:
    steps = Steps(("build", "network"), stream=io.StringIO())
    with steps.step("build"):
        pass
    with pytest.raises(InputError, match=r"step 2/2 \(network\) failed: bad scenario"), steps.step("network"):
        raise InputError("bad scenario")
    assert set(steps.durations) == {"build", "network"}


def test_foreign_errors_become_step_errors() -> None:
    steps = Steps(("traffic",), stream=io.StringIO())
    with pytest.raises(StepError, match=r"step 1/1 \(traffic\) failed: OSError: boom"), steps.step("traffic"):
        raise OSError("boom")


def test_progress_lines_and_split() -> None:
    out = io.StringIO()
    steps = Steps(("build",), stream=out)
    with steps.step("build"):
        steps.say("compiling")
    assert "[1/1 build] compiling" in out.getvalue()
    assert steps.split().startswith("total ") and "build " in steps.split()
