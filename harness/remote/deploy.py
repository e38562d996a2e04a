"""Deploy a tor build to a relay host: upload, check, switch atomically, verify, roll back.

Layout on the host (``install_dir``)::

    releases/stock/        the host's own tor and torrc (symlinks), the first "previous"
    releases/ID/           tor, defaults-torrc (%include of the host's files), torrc (our
                           fragment, which overrides them), manifest
    current, previous      symlinks to releases, each replaced by a single rename
    state                  phase=active|verified|rolled-back|switching|broken, current=,
                           previous=, prior= (what previous named before the last switch)
    kist-switch, host.env  the on-host switch script (switch_script.py) and its settings

The configuration of a release is written by ``fragment``; a release that starts but
fails verification is abandoned: the host goes back to the previous release, and
``previous`` back to what it named before, so no later rollback returns to the failure.

Everything that changes what tor runs happens in ``kist-switch``, started detached on the
host: a connection dropped at any point leaves either the old or the new release running
(uploads go to ``ID.partial`` and are renamed only when complete and checksummed).
"""

from __future__ import annotations

import hashlib
import logging
import re
import shlex
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from harness.errors import CommandFailed, InputError, StepError
from harness.remote.fragment import Settings, check, release_files, release_id
from harness.remote.inventory import Permission, RunMode
from harness.remote.ssh import Session
from harness.signals import deferred, raise_if_stopped
from harness.store.records import KIST_RUN

log = logging.getLogger(__name__)

_ELF_ARCH = {62: "x86_64", 183: "aarch64", 3: "i686", 40: "armv7l", 243: "riscv64"}
POLL_S = 0.5


@dataclass(frozen=True)
class Release:
    id: str
    sha256: str
    version: str
    patch_hash: str | None


@dataclass(frozen=True)
class Verification:
    """What the running tor said through its control port."""

    version: str
    patch_hash: str | None           # reported by tor, else the manifest's if tor offers KIST_RUN
    schedulers: str
    bootstrap: int
    control_listeners: tuple[str, ...]
    bootstrap_s: float = 0.0         # from connecting to the control port until 100% (or the end)
    patch_events: bool = False       # tor offers the patch's KIST_RUN event


@dataclass(frozen=True)
class Outcome:
    """What one deploy did on one host."""

    host: str
    release: Release
    previous: str
    verification: Verification


def elf_architecture(binary: Path) -> str:
    head = binary.read_bytes()[:20]
    if head[:4] != b"\x7fELF":
        raise InputError(f"{binary} is not an ELF executable; give a tor binary built for the host.")
    little = head[5] == 1
    machine = int.from_bytes(head[18:20], "little" if little else "big")
    return _ELF_ARCH.get(machine, f"elf-machine-{machine}")


def local_distribution() -> str:
    fields = dict(line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines()
                  if "=" in line)
    return f"{fields.get('ID', '').strip(chr(34))} {fields.get('VERSION_ID', '').strip(chr(34))}"


def _switch_script() -> bytes:
    from harness.remote.switch_script import SCRIPT

    return SCRIPT.encode()


def read_state(session: Session) -> dict[str, str]:
    res = session.run(f"cat '{session.host.install_dir}/state' 2>/dev/null || true")
    return dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)


def prepare_host(session: Session) -> None:
    """Install the switch script and settings; finish a switch a crash interrupted."""
    host, d = session.host, session.host.install_dir
    env = {"RUN_MODE": host.run.value, "UNIT": host.unit, "PID_FILE": str(host.pid_file),
           "CONTROL_PORT": str(host.control_port or ""),
           "CONTROL_SOCKET": str(host.control_socket or ""),
           "WAIT_S": str(int(min(host.verify_timeout_s, 120)))}
    session.run(f"mkdir -p '{d}/releases' && chmod 700 '{d}'")
    session.put(_switch_script(), d / "kist-switch", 0o755)
    session.put("".join(f"{k}={shlex.quote(v)}\n" for k, v in env.items()).encode(), d / "host.env")
    state = read_state(session)
    if state.get("phase") == "switching":
        log.warning("%s: found an interrupted switch (%s); restoring %s", host.name,
                    state, state.get("from"))
        _run_switch(session, "recover")
    stock = d / "releases" / "stock"
    defaults = host.defaults_torrc or PurePosixPath("/dev/null")
    session.run(f"test -d '{stock}' || {{ mkdir -p '{stock}.partial' && "
                f"ln -sfn '{host.tor_binary}' '{stock}.partial/tor' && "
                f"ln -sfn '{host.torrc}' '{stock}.partial/torrc' && "
                f"ln -sfn '{defaults}' '{stock}.partial/defaults-torrc' && "
                f"mv -T '{stock}.partial' '{stock}'; }}")
    session.run(f"test -e '{d}/current' || {{ ln -sfn releases/stock '{d}/current.new' && "
                f"mv -Tf '{d}/current.new' '{d}/current' && "
                f"printf 'phase=active\\ncurrent=stock\\nprevious=stock\\n' > '{d}/state.new' && "
                f"mv -f '{d}/state.new' '{d}/state'; }}")


def _run_switch(session: Session, *args: str) -> dict[str, str]:
    """Run kist-switch detached on the host, wait for it, return the new state."""
    d = session.host.install_dir
    cmd = " ".join(shlex.quote(a) for a in args)
    with deferred():  # a signal now waits for the switch's end: its state must be known
        pid = session.run(f"cd '{d}' && setsid nohup sh ./kist-switch {cmd} > switch.log 2>&1 "
                          "< /dev/null & echo $!").stdout.strip()
        deadline = time.monotonic() + 2 * min(session.host.verify_timeout_s, 120) + 60
        while session.run(f"kill -0 {pid} 2>/dev/null", check=False).ok:
            if time.monotonic() > deadline:
                raise StepError(f"{session.host.describe()}: kist-switch {cmd} still running after "
                                f"its deadline; see {d}/switch.log on the host.")
            time.sleep(POLL_S)
        state = read_state(session)
    log.info("%s: kist-switch %s -> %s", session.host.name, cmd, state)
    return state


def _switch_log(session: Session) -> str:
    d = session.host.install_dir
    return session.run(f"tail -n 20 '{d}/switch.log'; tail -n 20 '{d}/tor.log' 2>/dev/null",
                       check=False).stdout


def _tor_log(session: Session, lines: int = 8) -> str:
    """The last lines of the log kist-switch gives a plain-process tor (systemd: the journal)."""
    host = session.host
    if host.run is RunMode.SYSTEMD:
        cmd = f"journalctl -u '{host.unit}' -n {lines} --no-pager -q"
    else:
        cmd = f"tail -n {lines} '{host.install_dir}/tor.log'"
    return session.run(f"{cmd} 2>/dev/null", check=False).stdout.rstrip() or "(no log lines)"


def _stage(session: Session, rid: str, files: dict[str, tuple[bytes, int]]) -> None:
    """Upload a release into ID.partial and rename it into place once complete and checked."""
    rel = session.host.install_dir / "releases" / rid
    partial = PurePosixPath(f"{rel}.partial")
    # a release directory only appears by rename once complete, and its id is a content
    # hash: if it exists (maybe running now), reuse it after checking the binary
    want = hashlib.sha256(files["tor"][0]).hexdigest()
    have = session.run(f"sha256sum '{rel}/tor' 2>/dev/null", check=False).stdout.split()
    if have and have[0] == want:
        log.info("%s: release %s is already on the host; not uploading it again",
                 session.host.name, rid)
        return
    session.run(f"rm -rf '{partial}' && mkdir -p '{partial}'")
    for name, (data, mode) in files.items():
        session.put(data, partial / name, mode)
    # refuse a config tor rejects before anything switches
    res = session.run(f"'{partial}/tor' --verify-config --defaults-torrc '{partial}/defaults-torrc' "
                      f"-f '{partial}/torrc' --Log 'warn stdout'", check=False)
    if not res.ok:
        session.run(f"rm -rf '{partial}'", check=False)
        raise CommandFailed(res.argv[0], res.returncode, res.tail(), where=session.host.describe())
    session.run(f"rm -rf '{rel}.old' && {{ test ! -e '{rel}' || mv -T '{rel}' '{rel}.old'; }} && "
                f"mv -T '{partial}' '{rel}' && rm -rf '{rel}.old'")


def _tor_version(session: Session, binary: PurePosixPath) -> str:
    res = session.run(f"'{binary}' --version")
    m = re.search(r"Tor version (\S+?)\.?\s", res.stdout + " ")
    if not m:
        raise StepError(f"{session.host.describe()}: {binary} --version does not print a Tor version: "
                        f"{res.stdout.strip()[:200]!r}")
    return m.group(1)


def push_binary(session: Session, binary: Path, settings: Settings, *, patch_hash: str | None = None,
                built_for: str | None = None) -> Outcome:
    """Push a locally built tor, switch to it, verify; roll back on any failure after the switch."""
    host = session.host
    check(host, settings)
    facts = session.facts()
    arch, dist = elf_architecture(binary), built_for or local_distribution()
    if (arch, dist) != (facts.architecture, facts.distribution):
        raise InputError(f"{binary} was built for {dist} on {arch}, but {host.describe()} runs "
                         f"{facts.distribution} on {facts.architecture}; build on the host instead "
                         "(--source) or build locally for that system.")
    prepare_host(session)
    return _install(session, binary.read_bytes(), settings, patch_hash, f"binary {binary.name}")


def push_source(session: Session, tarball: Path, patches: list[Path], settings: Settings, *,
                patch_hash: str | None = None) -> Outcome:
    """Push a tor source tarball and a patch series, build on the host, then switch as above."""
    host = session.host
    check(host, settings)
    if Permission.BUILD not in host.allow:
        raise InputError(f"{host.describe()}: building on the host is not allowed; add \"build\" to "
                         f"its allow list in the inventory, or push a binary (--binary).")
    prepare_host(session)
    src_digest = hashlib.sha256(tarball.read_bytes() + b"".join(p.read_bytes() for p in patches))
    work = host.install_dir / "build" / src_digest.hexdigest()[:16]
    session.run(f"rm -rf '{work}' && mkdir -p '{work}/patches'")
    session.put(tarball, work / "source.tar")
    names = []
    for i, patch in enumerate(patches):
        name = f"{i:04d}-{patch.name}"
        session.put(patch, work / "patches" / name)
        names.append(name)
    # a systemd unit of Type=notify (Debian's tor@default) waits for sd_notify: a tor built
    # without libsystemd would never be seen as started, so require it there
    systemd = host.run is RunMode.SYSTEMD
    if Permission.INSTALL_BUILD_DEPS in host.allow:
        # update first: a host may have no package lists yet (minimal images, cloud instances)
        session.run("apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
                    "--no-install-recommends "
                    "build-essential patch pkg-config libevent-dev libssl-dev zlib1g-dev"
                    + (" libsystemd-dev" if systemd else ""), timeout=host.build_timeout_s)
    apply = " && ".join(f"patch -p1 --forward --batch < ../patches/{shlex.quote(n)}" for n in names)
    try:
        session.run(f"cd '{work}' && mkdir src && tar -xf source.tar -C src --strip-components=1 && "
                    f"cd src{' && ' + apply if apply else ''} && "
                    "./configure --disable-asciidoc --disable-unittests -q"
                    f"{' --enable-systemd' if systemd else ''} && "
                    "make -j\"$(nproc)\" src/app/tor >/dev/null",
                    timeout=host.build_timeout_s)
        built = (work / "src" / "src" / "app" / "tor")
        data = session.run(f"base64 -w0 '{built}'", quiet=True).stdout
    except (StepError, KeyboardInterrupt):  # a signal (harness.signals) cleans up as a failure does
        session.run(f"rm -rf '{work}'", check=False)
        log.error("%s: the build did not finish; nothing was switched, the running tor is unchanged",
                  host.name)
        raise
    import base64

    session.run(f"rm -rf '{work}'", check=False)
    return _install(session, base64.b64decode(data), settings, patch_hash, f"build {tarball.name}")


def _install(session: Session, binary: bytes, settings: Settings, patch_hash: str | None,
             source: str) -> Outcome:
    """Stage a release of ``binary`` with this configuration, switch to it, verify it."""
    sha = hashlib.sha256(binary).hexdigest()
    manifest = f"sha256={sha}\npatch_hash={patch_hash or ''}\nsource={source}\n"
    host = session.host
    # quiet: a host torrc may hold a HashedControlPassword; it stays on the host
    torrc_text = session.run(f"cat '{host.torrc}'", quiet=True).stdout
    defaults_text = (session.run(f"cat '{host.defaults_torrc}'", quiet=True).stdout
                     if host.defaults_torrc else None)
    files = release_files(host, settings, binary, manifest, torrc_text, defaults_text)
    rid = release_id(files)
    _stage(session, rid, files)
    version = _tor_version(session, session.host.install_dir / "releases" / rid / "tor")
    return _activate(session, Release(rid, sha, version, patch_hash))


def _activate(session: Session, release: Release) -> Outcome:
    host = session.host
    state = read_state(session)
    before = state.get("current", "stock")
    if before == release.id and state.get("phase") in {"active", "verified"}:
        # already switched (e.g. a connection dropped after the switch): only verify
        log.info("%s: release %s is already running; verifying it", host.name, release.id)
    else:
        state = _run_switch(session, "activate", release.id)
        with deferred():  # until verify's own rollback covers it, a signal must not land here
            busy = "busy: pid" in _switch_log(session)
        if busy:
            raise StepError(f"{host.describe()}: another deploy is switching this host right now; "
                            "nothing was changed by this one. Retry when it has finished.")
    if state.get("phase") not in {"active", "verified"} or state.get("current") != release.id:
        raise StepError(f"{host.describe()}: tor did not come up on release {release.id}; "
                        f"the host is back on {state.get('current', '?')} "
                        f"(phase {state.get('phase', '?')}).\n--- switch log ---\n{_switch_log(session)}")
    try:
        result = verify(session, release)
    except (StepError, KeyboardInterrupt) as exc:
        # back to the release it replaced, and `previous` back to what it named before, so
        # a later `deploy rollback` never brings the release that just failed back; a
        # signal during verification (harness.signals) is treated as a failed verification
        after = _run_switch(session, "abandon", release.id)
        if isinstance(exc, KeyboardInterrupt):
            log.error("%s: stopped while verifying release %s; rolled back to %s", host.name,
                      release.id, after.get("current", "?"))
            raise
        raise StepError(f"{host.describe()}: verification of release {release.id} failed: {exc}\n"
                        f"rolled back automatically: the host is on {after.get('current', '?')} "
                        f"(phase {after.get('phase', '?')}).") from exc
    session.run(f"sed -i 's/^phase=active$/phase=verified/' '{host.install_dir}/state'")
    log.info("%s: release %s verified (tor %s, Schedulers %s, bootstrap %d%%)", host.name,
             release.id, result.version, result.schedulers, result.bootstrap)
    return Outcome(host.name, release, state.get("previous", before), result)


def expected_release(session: Session) -> Release:
    """The release ``current`` points at, read back from its manifest."""
    d = session.host.install_dir
    rid = session.run(f"basename \"$(readlink '{d}/current')\"").stdout.strip()
    if rid == "stock":
        raise InputError(f"{session.host.describe()}: runs the host's own tor (no deploy to verify).")
    man = session.run(f"cat '{d}/releases/{rid}/manifest'").stdout
    fields = dict(line.split("=", 1) for line in man.splitlines() if "=" in line)
    version = _tor_version(session, d / "releases" / rid / "tor")
    return Release(rid, fields.get("sha256", ""), version, fields.get("patch_hash") or None)


def verify(session: Session, release: Release) -> Verification:
    """Through the SSH tunnel: version, patch hash, Schedulers, loopback-only control, bootstrap."""
    import stem

    from harness.remote.tunnel import open_control_tunnel

    host = session.host
    got = session.run(f"sha256sum '{host.install_dir}/releases/{release.id}/tor'").stdout.split()[0]
    if got != release.sha256:
        raise StepError(f"the binary of release {release.id} on the host has sha256 {got}, "
                        f"expected {release.sha256}")
    with open_control_tunnel(host, session=session) as tunnel, tunnel.controller() as ctl:
        start = time.monotonic()
        try:
            version = ctl.get_info("version").split()[0]
            try:
                patch_hash: str | None = ctl.get_info("kist/patch-hash").strip()
            except stem.ControllerError:
                patch_hash = None
            patch_events = KIST_RUN in ctl.get_info("events/names", "").split()
            schedulers = ctl.get_conf("Schedulers")
            listeners = tuple(x.strip('"') for x in ctl.get_info("net/listeners/control").split())
            progress = _bootstrap(ctl)
            while host.require_bootstrap and progress < 100 and \
                    time.monotonic() < start + host.verify_timeout_s:
                raise_if_stopped()  # each host runs in a thread of its own (ssh.on_hosts)
                time.sleep(POLL_S)
                progress = _bootstrap(ctl)
        except stem.ControllerError as exc:
            raise StepError(f"control port query failed: {exc}") from exc
        waited = time.monotonic() - start
    problems = []
    if version.rstrip(".") != release.version:
        problems.append(f"tor reports version {version}, the release is {release.version}")
    if release.patch_hash and patch_hash is None and patch_events:
        # the series does not answer kist/patch-hash (yet): its events show it is in, and
        # the manifest (checksummed with the binary) says which series it was
        patch_hash = release.patch_hash
    if release.patch_hash and patch_hash != release.patch_hash:
        problems.append(f"patch hash is {patch_hash or 'not reported'}, expected "
                        f"{release.patch_hash}" + ("" if patch_events else
                                                   f" (and tor does not offer {KIST_RUN})"))
    expected = _fragment_value(session, release.id, "Schedulers")
    if expected and schedulers != expected:
        problems.append(f"Schedulers is {schedulers}, expected {expected}")
    public = [a for a in listeners if not a.startswith(("127.", "[::1]", "unix:", "/"))]
    if public:
        problems.append(f"control listener(s) on a non-loopback address: {', '.join(public)}")
    if host.require_bootstrap and progress < 100:
        problems.append(f"bootstrap reached {progress}% in {host.verify_timeout_s:.0f} s, not 100%"
                        f"\n--- tor log ---\n{_tor_log(session)}")
    if problems:
        raise StepError("; ".join(problems))
    return Verification(version, patch_hash, schedulers, progress, listeners, round(waited, 1),
                        patch_events)


def _bootstrap(ctl: Any) -> int:
    m = re.search(r"PROGRESS=(\d+)", ctl.get_info("status/bootstrap-phase"))
    return int(m.group(1)) if m else 0


def _fragment_value(session: Session, rid: str, key: str) -> str | None:
    text = session.run(f"cat '{session.host.install_dir}/releases/{rid}/torrc'").stdout
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        if k == key:
            return v.strip()
    return None


def rollback(session: Session) -> dict[str, str]:
    """Switch back to the previous release (the host's own tor after a first deploy)."""
    prepare_host(session)
    state = _run_switch(session, "rollback")
    if "busy: pid" in _switch_log(session):
        raise StepError(f"{session.host.describe()}: another deploy is switching this host right "
                        "now; retry the rollback when it has finished.")
    if state.get("phase") != "rolled-back":
        raise StepError(f"{session.host.describe()}: rollback left the host in phase "
                        f"{state.get('phase', '?')} on {state.get('current', '?')}.\n--- switch log ---\n"
                        f"{_switch_log(session)}")
    return state


__all__ = ["Outcome", "Permission", "Release", "RunMode", "Settings", "Verification", "push_binary",
           "prepare_host", "push_source", "read_state", "rollback", "verify"]
