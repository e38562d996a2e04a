"""`kist-harness run`'s two link flags: a plain `run paper` must give the grid the paper's links."""
from __future__ import annotations

import pytest

from harness.cli import build_parser
from harness.commands.run import grid_links
from harness.errors import InputError


@pytest.mark.parametrize(("argv", "want"), [
    (["run", "paper"], "paper"),
    (["run"], "paper"),
    (["run", "--no-links"], "none"),
    (["run", "paper", "--links", "none"], "none"),
    (["run", "paper", "--links", "paper"], "paper"),
    (["run", "paper", "--no-links"], "none"),
])
def test_link_flags_resolve_to_one_link_model(argv: list[str], want: str) -> None:
    assert grid_links(build_parser().parse_args(argv)) == want


def test_contradicting_link_flags_are_one_clear_error() -> None:
    with pytest.raises(InputError, match="--no-links and --links paper"):
        grid_links(build_parser().parse_args(["run", "paper", "--no-links", "--links", "paper"]))
