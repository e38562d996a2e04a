"""The README's main-job command on a bare Debian 12 machine, for real, in a container.

A machine that has only what a fresh Debian 12 install has is the case a new user meets
and the one a developer's machine hides: packages installed by hand make a missing
install step invisible. This check makes such a machine from the project's own base image
(debootstrap minbase: no tor, no docker.io, no build dependencies, no venv), copies the
checkout in, installs the README's stated prerequisite (python3 with venv) and runs the
README's first command exactly as the README writes it, streaming its output.

Inside an unprivileged container the Docker engine cannot start, so the main job says why
and uses its local backend: that is the README's documented fallback, and it is what is
checked here. Where this host trusts extra CAs (/usr/local/share/ca-certificates, as
behind a TLS-inspecting egress proxy) they are carried in, as that network's machines have
them; nothing else of this host is.

    python -m harness.baremachine            # prints progress, ends with the summary line
"""

from __future__ import annotations

import argparse
import io
import re
import secrets
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError, InputError, StepError
from harness.proc import run

LABEL = "kist-harness.owner=bare-machine"
PREREQUISITES = "python3 python3-venv ca-certificates"  # the README's "what they need" for its commands
_SUMMARY = re.compile(r"^runs=(\d+) decisions=(\d+) divergences=(\d+) downloads=(\d+)", re.M)


@dataclass(frozen=True)
class BareResult:
    command: str
    returncode: int
    seconds: float
    prerequisites_s: float
    summary: str          # the main job's runs=... line, or "" if it never got there
    output_tail: str

    @property
    def divergences(self) -> int | None:
        m = _SUMMARY.search(self.summary)
        return int(m.group(3)) if m else None


def readme_command(readme: Path) -> str:
    """The main-job command as the README writes it: the indented line under "Main job"."""
    text = readme.read_text()
    start = text.find("Main job")
    if start < 0:
        raise InputError(f"{readme}: no 'Main job' paragraph; the bare-machine check runs the command "
                         "written under it.")
    for line in text[start:].splitlines():
        if line.startswith("    ") and "kist-harness run" in line:
            return line.strip()
    raise InputError(f"{readme}: the 'Main job' paragraph has no indented `... kist-harness run` line.")


def _checkout_tar(root: Path) -> bytes:
    """The files git would commit (tracked, and untracked but not ignored), as a tar under src/."""
    names = run(["git", "-C", str(root), "ls-files", "-co", "--exclude-standard", "-z"]).stdout.split("\0")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in filter(None, names):
            path = root / name
            if path.is_file():
                tar.add(path, arcname=f"src/{name}", recursive=False)
    return buf.getvalue()


def _docker(*args: str, input_bytes: bytes | None = None, timeout: float = 300) -> None:
    proc = subprocess.run(["docker", *args], input=input_bytes, capture_output=True, timeout=timeout)
    if proc.returncode != 0:
        raise StepError(f"docker {' '.join(args[:3])} failed: {proc.stderr.decode(errors='replace')[-800:]}")


def _remove_container(name: str, attempts: int = 6) -> str | None:
    """``docker rm -f`` until the container is gone; None, or what the daemon last said.

    One ``rm -f`` is not always enough: with the main job's tor processes just killed and the
    machine loaded, the daemon can answer "tried to kill container, but did not receive an exit
    event" and keep the container (CI saw one left behind on 2026-12-04). Checking that it is
    gone, and asking again, is what makes the teardown promise true.
    """
    said = ""
    for attempt in range(attempts):
        proc = subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True, text=True, timeout=180)
        gone = subprocess.run(["docker", "container", "inspect", name], capture_output=True,
                              timeout=60).returncode != 0
        if gone:
            return None
        said = (proc.stderr or proc.stdout).strip()[-400:]
        time.sleep(2.0 * (attempt + 1))
    return said or "docker rm -f returned but the container is still listed"


def _stream(container: str, script: str, say: Callable[[str], None], timeout: float) -> tuple[int, str]:
    """Run a shell script in the container, each output line to ``say``; (exit code, output)."""
    proc = subprocess.Popen(["docker", "exec", container, "bash", "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace")
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            say(line.rstrip("\n"))
            if time.monotonic() > deadline:
                raise StepError(f"the bare-machine run took longer than {timeout:.0f} s")
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, "".join(lines)


def check(root: Path, say: Callable[[str], None] = print, timeout_s: float = 3600.0) -> BareResult:
    """Make the bare container, run the README's first command in it, remove the container."""
    from harness.network import images

    command = readme_command(root / "README.md")
    base = images.ensure_base()
    name = f"kist-bare-{secrets.token_hex(4)}"
    _docker("run", "-d", "--name", name, "--label", LABEL, "--hostname", "bare", base, "sleep", "infinity")
    try:
        _docker("cp", "-", f"{name}:/", input_bytes=_checkout_tar(root), timeout=600)
        cas = sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))
        if cas:
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as tar:
                for ca in cas:
                    tar.add(ca, arcname=f"usr/local/share/ca-certificates/{ca.name}")
            _docker("cp", "-", f"{name}:/", input_bytes=buf.getvalue())
        say(f"bare machine {name} from {base}: installing the README's prerequisites ({PREREQUISITES})")
        t0 = time.monotonic()
        code, present = _stream(name, "command -v tor docker dockerd gcc make || true", lambda _l: None, 60)
        if present.strip():
            raise StepError(f"the bare machine is not bare: it already has {' '.join(present.split())}")
        code, out = _stream(name, "set -e; export DEBIAN_FRONTEND=noninteractive; apt-get update -q >/dev/null; "
                            f"apt-get install -y -q --no-install-recommends {PREREQUISITES} >/dev/null 2>&1; "
                            "update-ca-certificates >/dev/null 2>&1", say, 900)
        if code != 0:
            raise StepError(f"installing the prerequisites in {name} failed:\n{out[-2000:]}")
        t_pre = time.monotonic() - t0
        say(f"prerequisites in {t_pre:.0f} s; now, as the README says: {command}")
        env = "export PIP_CERT=/etc/ssl/certs/ca-certificates.crt; " if cas else ""
        t1 = time.monotonic()
        code, out = _stream(name, f"cd /src && {env}{command}", say, timeout_s)
        seconds = time.monotonic() - t1
    finally:
        left = _remove_container(name)
        if left is not None:
            say(f"the bare container {name} could not be removed ({left}); remove it with `docker rm -f {name}`")
    if left is not None:
        raise StepError(f"the bare container {name} could not be removed after 6 tries: {left}. "
                        f"Remove it with `docker rm -f {name}`; the main job's result was: "
                        f"exit {code} after {seconds:.0f} s.")
    m = _SUMMARY.search(out)
    return BareResult(command, code, seconds, t_pre, m.group(0) if m else "", out[-3000:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkout", type=Path, default=Path(__file__).resolve().parent.parent)
    args = parser.parse_args(argv)
    try:
        res = check(args.checkout, say=lambda line: print(f"  | {line}", flush=True))
    except HarnessError as exc:
        print(f"bare-machine check: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("bare-machine check: interrupted; the container was removed", file=sys.stderr)
        return 130
    print(f"bare machine: `{res.command}` exited {res.returncode} after {res.seconds:.0f} s "
          f"(prerequisites {res.prerequisites_s:.0f} s before it)")
    print(res.summary or "no summary line: the main job did not finish")
    return 0 if res.returncode == 0 and res.divergences == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
