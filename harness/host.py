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
    "network": ("tor", "iproute2", "util-linux", "procps", "debootstrap"),  # tor-gencert, unshare probes, pgrep, base image
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
            f"these Debian packages are missing: {' '.join(missing)}. "
            f"Install them (sudo apt-get install {' '.join(missing)}) or run `kist-harness host setup` as root."
        )
    apt_update()
    log.info("installing %s", " ".join(missing))
    run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], env=_apt_env(), timeout=1800)
    return missing


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
    if not docker_running():
        logfile = Path("/var/log/kist-harness-dockerd.log")
        with logfile.open("ab") as fh:
            subprocess.Popen(["dockerd"], stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        log.info("started dockerd (log: %s)", logfile)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if docker_running():
            return "started dockerd"
        time.sleep(0.5)
    raise StepError(f"dockerd did not answer within {timeout_s:.0f} s; see /var/log/kist-harness-dockerd.log")


def setup(parts: tuple[str, ...] = tuple(PACKAGES)) -> list[str]:
    """Bring the host to what the tests and the main job need; return what was done."""
    done = []
    wanted = [pkg for part in parts for pkg in PACKAGES[part]]
    installed = ensure_packages(wanted)
    if installed:
        done.append(f"installed {len(installed)} packages: {' '.join(installed)}")
    if "build" in parts and ensure_deb_src():
        done.append(f"added deb-src lines in {DEB_SRC_FILE}")
    if "docker" in parts:
        done.append(ensure_dockerd())
    return done
