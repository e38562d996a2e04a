"""One error root for the harness; the CLI turns each into a message and an exit code.

Exit codes are part of the interface, so scripts can tell a finding from a failure:
0 success, 1 a finding (divergence from the model, queue times disagreeing with the
decisions), 2 bad input or usage, 3 a step failed (build, network, SSH, control port),
128 + N stopped by signal N (harness.signals: 130 SIGINT, 143 SIGTERM, 129 SIGHUP).
A finding is a result, not an error: the checks return it (harness.checks) and the
command exits 1; only failures are raised.
"""

from __future__ import annotations


class HarnessError(Exception):
    """Root of every error the harness raises on purpose."""

    exit_code = 3


class InputError(HarnessError):
    """A file, field or argument the user gave is wrong; the message says where and what to do."""

    exit_code = 2


class StepError(HarnessError):
    """An external step (a command, a container, a connection) failed."""

    exit_code = 3


class CommandFailed(StepError):
    """An external command exited non-zero: shows the command, its exit code and its output tail."""

    def __init__(self, argv: list[str] | str, returncode: int, output_tail: str, where: str = "") -> None:
        cmd = argv if isinstance(argv, str) else " ".join(argv)
        place = f" on {where}" if where else ""
        tail = output_tail.rstrip()
        super().__init__(
            f"command failed{place} with exit code {returncode}: {cmd}"
            + (f"\n--- last lines of its output ---\n{tail}" if tail else "")
        )
        self.argv = argv
        self.returncode = returncode
        self.output_tail = output_tail
        self.where = where
