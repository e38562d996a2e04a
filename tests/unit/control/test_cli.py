"""`kist-harness collect` turns bad input and unreachable tors into messages and exit codes."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from harness.cli import main


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("argv, message", [
    (["--control", "nohost:xx"], "neither HOST:PORT nor a socket path"),
    (["--control", "127.0.0.1:9051", "--duration", "10q"], "is not a duration"),
    (["--control", "127.0.0.1:9051", "--ab", "KIST"], "at least two arms"),
    (["--control", "127.0.0.1:9051", "--cookie", "/nonexistent/cookie"], "no such file"),
    (["--ab", "KIST,Vanilla"], "need --control"),
    (["--control", "127.0.0.1:9051", "--events", "KIST_QTIME,KIST KQTIME"], "is not an event name"),
])
def test_bad_input_exits_2_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          argv: list[str], message: str) -> None:
    assert main(["collect", "--out", str(tmp_path / "s.db"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_unreachable_tor_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = _free_port()
    assert main(["collect", "--control", f"127.0.0.1:{port}", "--out", str(tmp_path / "s.db"),
                 "--duration", "5s", "--parse-workers", "0"]) == 3
    assert f"cannot reach tor's control port at 127.0.0.1:{port}" in capsys.readouterr().err


def test_reading_a_store_without_control(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["collect", "--out", str(tmp_path / "missing.db")]) == 2
    assert "does not exist" in capsys.readouterr().err
