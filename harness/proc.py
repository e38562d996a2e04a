"""Running local commands: every call returns a Result, a failure shows command and output tail."""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.errors import CommandFailed

log = logging.getLogger(__name__)

TAIL_LINES = 30


@dataclass(frozen=True)
class Result:
    """What one command did: enough to report a failure without re-running it."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def tail(self, lines: int = TAIL_LINES) -> str:
        text = (self.stdout + ("\n" if self.stdout and self.stderr else "") + self.stderr).rstrip()
        return "\n".join(text.splitlines()[-lines:])


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    input_text: str | None = None,
) -> Result:
    """Run a command to completion, capturing output; raise CommandFailed when check and it fails."""
    start = time.monotonic()
    log.debug("run: %s", " ".join(argv))
    try:
        proc = subprocess.run(
            list(argv), cwd=cwd, env=None if env is None else dict(env), timeout=timeout,
            input=input_text, capture_output=True, text=True, errors="replace", check=False,
        )
    except FileNotFoundError as exc:
        raise CommandFailed(list(argv), 127, f"{argv[0]}: not found on PATH") from exc
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        raise CommandFailed(list(argv), -1, f"timed out after {timeout} s\n{out[-2000:]}") from exc
    result = Result(tuple(argv), proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)
    if check and not result.ok:
        raise CommandFailed(list(argv), result.returncode, result.tail())
    return result
