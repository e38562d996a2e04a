"""The configuration a deploy writes: the scheduler fragment, the host's extra torrc, the layers.

A release runs ``tor --defaults-torrc defaults-torrc -f torrc``:

- ``defaults-torrc`` is the host's own configuration (its defaults file if any, then its
  torrc, merged the way tor layers them), so an operator's relay keeps its identity, ports
  and policies;
- ``torrc`` (the fragment) overrides them, option by option: the host's ``extra_torrc``
  lines (a local file named in the inventory, e.g. to join a private test network), then
  the scheduler settings, then a control endpoint on loopback or a unix socket with cookie
  authentication, which nothing else may set.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from harness.errors import InputError
from harness.remote.inventory import Host

_KEY = re.compile(r"[A-Za-z_]\w*")
# the deploy's own: a control endpoint must never be opened or weakened by other settings
_RESERVED = ("control", "cookie", "hashedcontrol")


@dataclass(frozen=True)
class Settings:
    """The fragment's scheduler settings; the control endpoint comes from the inventory."""

    schedulers: str = "KIST"
    options: tuple[tuple[str, str], ...] = ()   # e.g. (("KISTSchedRunInterval", "2"),)


def check_settings(settings: Settings) -> None:
    for key, value in (("Schedulers", settings.schedulers), *settings.options):
        if not _KEY.fullmatch(key) or "\n" in value or not value.strip():
            raise InputError(f"torrc option {key}={value!r} is invalid: write KEY=VALUE on one line.")
        if key.lower().startswith(_RESERVED):
            raise InputError(f"torrc option {key} is set by the deploy itself (a loopback control "
                             "port or socket with cookie auth); set control_port or control_socket "
                             "in the inventory instead.")


def check(host: Host, settings: Settings) -> None:
    """Refuse bad settings or a bad extra_torrc before anything is uploaded or built."""
    check_settings(settings)
    extra_lines(host)


def extra_lines(host: Host) -> list[str]:
    """The host's ``extra_torrc`` file as torrc lines (comments kept), checked option by option.

    Refused, naming file and line: a control or cookie option (the deploy sets those),
    ``Schedulers`` (``--schedulers`` sets it), ``%include`` (it would name files on the
    host that the release's checksum does not cover) and lines that are not ``Key value``.
    """
    if host.extra_torrc is None:
        return []
    path = host.extra_torrc
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"host {host.name}: extra_torrc {path} cannot be read ({exc.strerror}); "
                         "fix the path in the inventory (relative paths are relative to it).") from exc
    out = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        where = f"{path}, line {number} ({line!r})"
        if not line or line.startswith("#"):
            out.append(line)
            continue
        key, _, value = line.partition(" ")
        if key.startswith("%"):
            raise InputError(f"{where}: {key} is not allowed in extra_torrc; put the lines "
                             "themselves in the file.")
        if not _KEY.fullmatch(key) or not value.strip():
            raise InputError(f"{where}: write one torrc option per line, as `Key value`.")
        if key.lower().startswith(_RESERVED):
            raise InputError(f"{where}: {key} is set by the deploy itself (a loopback control "
                             "port or socket with cookie auth); set control_port or "
                             "control_socket in the inventory instead.")
        if key.lower() == "schedulers":
            raise InputError(f"{where}: set the scheduler with --schedulers, not in extra_torrc.")
        out.append(line)
    return out


def fragment(host: Host, settings: Settings) -> str:
    """The torrc under test; as ``-f`` it overrides the host's torrc (the defaults layer)."""
    lines = ["# written by kist-harness deploy; overrides the host's torrc (see defaults-torrc)"]
    extra = extra_lines(host)
    if extra:
        lines += [f"# from {host.extra_torrc} (the inventory's extra_torrc)", *extra]
    lines += [f"Schedulers {settings.schedulers}"]
    lines += [f"{k} {v}" for k, v in settings.options]
    if host.control_socket is not None:
        # a unix socket only; ControlPort 0 drops any TCP control port the host's torrc had
        lines += ["ControlPort 0", f"ControlSocket {host.control_socket}"]
    else:
        lines += [f"ControlPort 127.0.0.1:{host.control_port}"]   # loopback only, never public
    lines += ["CookieAuthentication 1"]
    return "\n".join(lines) + "\n"


def _option(line: str) -> str | None:
    """The option a torrc line sets (lower case: tor's names are case-insensitive), else None."""
    text = line.strip()
    if not text or text.startswith(("#", "%")):
        return None
    return text.split(None, 1)[0].lstrip("+/").lower()


def defaults_layer(host: Host, torrc_text: str, defaults_text: str | None) -> str:
    """The release's ``defaults-torrc``: the host's own configuration, which the fragment overrides.

    Tor has two layers, and the fragment needs the upper one, so the host's two files are
    merged into the lower one as tor would layer them: a defaults-file option the host's
    torrc also sets is dropped (on Debian, the service defaults' ``SocksPort 9050`` next to
    a relay's ``SocksPort 0`` would otherwise be one layer's contradiction). A copy, not an
    ``%include``: the release id covers what the release runs with.
    """
    lines = [f"# the host's own configuration ({host.torrc}"
             + (f" over {host.defaults_torrc}" if host.defaults_torrc else "")
             + "), copied at deploy time; torrc (the fragment) overrides it"]
    if defaults_text is not None:
        overridden = {o for o in map(_option, torrc_text.splitlines()) if o}
        lines += [f"# from {host.defaults_torrc} (options {host.torrc} sets are left out)"]
        lines += [line for line in defaults_text.splitlines() if _option(line) not in overridden]
    lines += [f"# from {host.torrc}", *torrc_text.splitlines()]
    return "\n".join(lines) + "\n"


def release_files(host: Host, settings: Settings, binary: bytes, manifest: str, torrc_text: str,
                  defaults_text: str | None) -> dict[str, tuple[bytes, int]]:
    """What goes into a release directory, by name: (content, mode)."""
    return {"tor": (binary, 0o755), "torrc": (fragment(host, settings).encode(), 0o644),
            "defaults-torrc": (defaults_layer(host, torrc_text, defaults_text).encode(), 0o644),
            "manifest": (manifest.encode(), 0o644)}


def release_id(files: dict[str, tuple[bytes, int]]) -> str:
    """A content hash: the same binary and configuration make the same release."""
    digest = hashlib.sha256()
    for name in ("tor", "torrc", "defaults-torrc"):
        digest.update(files[name][0])
    return digest.hexdigest()[:16]
