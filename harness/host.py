"""Host setup: the Debian packages, deb-src lines and Docker engine the harness needs.

Idempotent and quick when everything is already there, so every test environment can
call it first (`kist-harness host setup`). Needs root to install; otherwise it says
exactly what is missing and how to get it.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

from harness.errors import StepError
from harness.proc import run

log = logging.getLogger(__name__)

# Debian packages by purpose; `host setup` installs what is missing.
PACKAGES: dict[str, tuple[str, ...]] = {
    "tor": ("tor",),  # stock Debian tor: the unpatched arm and tor-gencert
    "build": ("build-essential", "dpkg-dev", "quilt", "git", "automake", "autoconf", "libtool",
              "pkg-config", "libevent-dev", "libssl-dev", "zlib1g-dev", "liblzma-dev",
              "libzstd-dev", "libcap-dev", "libseccomp-dev", "libsystemd-dev", "asciidoc-base"),
    "docker": ("docker.io", "debootstrap"),
    "net": ("iproute2", "iptables", "procps"),
    "ssh": ("openssh-server", "openssh-client"),
    "network": ("tor", "iproute2", "iptables", "util-linux", "procps", "debootstrap"),  # tor-gencert, shaping, unshare probes, pgrep, base image
}

# What each step of each command needs, as parts of PACKAGES: the one list `run`, `net`,
# `build`, `collect`, `deploy` and the tests (`host setup`, all parts) go by. A step
# checks its own just before it runs, so a cached build needs no compiler and a failure
# comes before minutes of work, not after.
STEP_NEEDS: dict[str, tuple[str, ...]] = {
    "build": ("build",),        # Tor's build dependencies (only when a build actually runs)
    "network": ("network",),    # any backend: tor-gencert for the keys, ip/iptables for links
    "docker": ("docker",),      # the Docker backend: the engine and debootstrap for the base image
    "ssh-tests": ("ssh",),      # the remote tests' sshd; deploy and collect --ssh need none here
    "collect": (),              # stem over TCP, a unix socket or SSH: Python packages only
    "deploy": (),               # paramiko; the relay host's own packages are the inventory's `allow`
}

DEB_SRC_FILE = Path("/etc/apt/sources.list.d/kist-harness-src.sources")
DEB_SRC_TEXT = """\
# Added by kist-harness: `apt-get source tor` needs deb-src lines.
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""

_apt_updated = False


def is_root() -> bool:
    return os.geteuid() == 0


def _apt_env() -> dict[str, str]:
    return {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}


def missing_packages(packages: tuple[str, ...] | list[str]) -> list[str]:
    """Packages not installed (dpkg-query's view)."""
    missing = []
    for pkg in packages:
        res = run(["dpkg-query", "-W", "-f=${Status}", pkg], check=False)
        if "install ok installed" not in res.stdout:
            missing.append(pkg)
    return missing


def apt_update() -> None:
    global _apt_updated
    if not _apt_updated:
        run(["apt-get", "update", "-q"], env=_apt_env(), timeout=600)
        _apt_updated = True


def ensure_packages(packages: tuple[str, ...] | list[str]) -> list[str]:
    """Install what is missing; return what was installed."""
    missing = missing_packages(packages)
    if not missing:
        return []
    if not is_root():
        raise StepError(
            f"these Debian packages are missing: {' '.join(missing)}, and this is not root, so they "
            f"cannot be installed from here. Run `sudo apt-get install {' '.join(missing)}` (or "
            "`sudo kist-harness host setup`, which installs everything kist-harness uses), then run "
            "this command again."
        )
    apt_update()
    log.info("installing %s", " ".join(missing))
    run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], env=_apt_env(), timeout=1800)
    return missing


def require(step: str) -> list[str]:
    """Install what ``step`` needs (STEP_NEEDS), as `host setup` would; not root: name the command.

    Returns what was installed (empty when everything was there: a few dpkg-query calls).
    """
    installed = ensure_packages(packages_for(STEP_NEEDS[step]))
    if installed:
        log.info("%s step: installed %s", step, " ".join(installed))
    return installed


def ensure_deb_src() -> bool:
    """Make sure apt knows deb-src lines for Debian; return True if it had to add them."""
    res = run(["apt-cache", "showsrc", "tor"], check=False)
    if res.ok and "Package: tor" in res.stdout:
        return False
    if not is_root():
        raise StepError(
            "apt has no deb-src lines, so `apt-get source tor` cannot work. As root, add "
            f"{DEB_SRC_FILE} (kist-harness host setup does it) or pass a tarball or git checkout."
        )
    DEB_SRC_FILE.write_text(DEB_SRC_TEXT)
    global _apt_updated
    _apt_updated = False
    apt_update()
    return True


def docker_running() -> bool:
    if shutil.which("docker") is None:
        return False
    return run(["docker", "info", "--format", "{{.ServerVersion}}"], check=False, timeout=20).ok


def ensure_dockerd(timeout_s: float = 60.0) -> str:
    """Start the Docker engine if it is installed but not running; return a description."""
    if docker_running():
        return "docker engine already running"
    if not is_root():
        raise StepError("the Docker engine is not running and this is not root: start dockerd "
                        "(sudo systemctl start docker), or use the local backend (--backend local).")
    ensure_packages(PACKAGES["docker"])
    if shutil.which("systemctl") and run(["systemctl", "is-system-running"], check=False).stdout.strip() in {
        "running", "degraded"
    }:
        run(["systemctl", "start", "docker"], check=False)
    logfile = Path("/var/log/kist-harness-dockerd.log")
    daemon = None
    if not docker_running():
        with logfile.open("ab") as fh:
            daemon = subprocess.Popen(["dockerd"], stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        log.info("started dockerd (log: %s)", logfile)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if docker_running():
            return "started dockerd"
        if daemon is not None and daemon.poll() is not None:
            # e.g. an unprivileged container: no cgroups or iptables for it; no use waiting
            tail = logfile.read_text(errors="replace").strip().splitlines()[-1:] if logfile.exists() else []
            raise StepError(f"dockerd exited at once (status {daemon.returncode}): "
                            f"{tail[0] if tail else 'no output'} (log: {logfile})")
        time.sleep(0.5)
    raise StepError(f"dockerd did not answer within {timeout_s:.0f} s; see {logfile}")


ALLOWED_CC = Path("/proc/sys/net/ipv4/tcp_allowed_congestion_control")
PAPER_CC = "cubic"  # the paper's era (Linux' default since 2.6.19); this machine's default is BBR


def allow_congestion(cc: str) -> bool:
    """Let network namespaces choose congestion control ``cc``; True when they now may.

    Only the host's namespace may pick any loaded algorithm; the others (every Docker node)
    may pick only what net.ipv4.tcp_allowed_congestion_control lists. Adding one changes no
    one's default: it is the permission the Docker backend needs to run the paper's CUBIC.
    Needs root and a kernel that has ``cc`` (not persisted: a reboot restores the list).
    """
    try:
        allowed = ALLOWED_CC.read_text().split()
        if cc in allowed:
            return True
        available = Path("/proc/sys/net/ipv4/tcp_available_congestion_control").read_text().split()
        if cc not in available or not is_root():
            return False
        ALLOWED_CC.write_text(" ".join([*allowed, cc]) + "\n")
    except OSError as exc:  # read-only /proc/sys (an unprivileged container)
        log.info("cannot widen %s: %s", ALLOWED_CC, exc)
        return False
    log.info("widened net.ipv4.tcp_allowed_congestion_control: %s -> %s (no one's default changes)",
             " ".join(allowed), " ".join([*allowed, cc]))
    return True


def packages_for(parts: tuple[str, ...]) -> list[str]:
    """The Debian packages of ``parts``, each once, in the order given: parts share packages
    (tor, iptables, debootstrap), and `host setup` says how many it installed."""
    return list(dict.fromkeys(pkg for part in parts for pkg in PACKAGES[part]))


def setup(parts: tuple[str, ...] = tuple(PACKAGES)) -> list[str]:
    """Bring the host to what the tests and the main job need; return what was done."""
    done = []
    installed = ensure_packages(packages_for(parts))
    if installed:
        done.append(f"installed {len(installed)} packages: {' '.join(installed)}")
    if "build" in parts and ensure_deb_src():
        done.append(f"added deb-src lines in {DEB_SRC_FILE}")
    if "docker" in parts:
        done.append(ensure_dockerd())
        before = ALLOWED_CC.read_text().split() if ALLOWED_CC.exists() else []
        if PAPER_CC not in before and allow_congestion(PAPER_CC):
            done.append(f"allowed {PAPER_CC} in net.ipv4.tcp_allowed_congestion_control (the paper's TCP for Docker nodes)")
    return done
