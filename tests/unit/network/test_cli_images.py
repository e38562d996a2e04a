"""`kist-harness net` input errors (exit 2, no traceback) and image input hashing."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import cli
from harness.network import images


def test_net_up_unknown_scenario_is_input_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["net", "up", "/nonexistent/scenario.toml"]) == 2
    err = capsys.readouterr().err
    assert "scenario file /nonexistent/scenario.toml does not exist" in err and "Traceback" not in err


def test_net_status_without_state_says_how_to_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert cli.main(["net", "status", "basic"]) == 2
    assert "kist-harness net up basic" in capsys.readouterr().err


def test_net_up_patched_without_binary_names_nodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert cli.main(["net", "up", "default"]) == 2
    err = capsys.readouterr().err
    assert "nodes kist, vanilla run the patched tor" in err and "--tor PATH" in err


def test_inputs_hash_changes_with_any_input() -> None:
    base = images.inputs_hash("recipe", "sha256:parent", "bin")
    assert base == images.inputs_hash("recipe", "sha256:parent", "bin")
    assert base != images.inputs_hash("recipe2", "sha256:parent", "bin")
    assert base != images.inputs_hash("recipe", "sha256:parent", "bin2")
    assert images.inputs_hash("ab", "c") != images.inputs_hash("a", "bc")  # parts are delimited


def test_recipes_are_in_the_repository() -> None:
    d = images.recipes_dir()
    assert "tor iproute2 iptables python3" in (d / "node-base.Dockerfile").read_text()
