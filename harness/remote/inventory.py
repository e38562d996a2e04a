"""The inventory: a TOML file of relay hosts, validated once into frozen records.

Example::

    [defaults]
    user = "root"
    known_hosts = "~/.ssh/known_hosts"

    [hosts.relay1]
    address = "192.0.2.10"
    key = "~/.ssh/id_ed25519"          # or agent = true
    run = "systemd"                    # or "process" (the harness starts tor itself)
    unit = "tor@default"
    control_port = 9051                # or control_socket = "/run/tor/control"
    allow = ["install-build-deps"]
    extra_torrc = "relay1.torrc"       # optional: torrc lines the deploy adds (a local file)

Every error names the file, the table and the field, and says what to write instead.
"""

from __future__ import annotations

import enum
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from harness.errors import InputError


class RunMode(enum.Enum):
    """How tor is started and stopped on the host."""

    SYSTEMD = "systemd"   # a systemd unit; the harness adds a drop-in pointing at its release
    PROCESS = "process"   # a plain daemon with a pid file; the harness starts and stops it


class Permission(enum.Enum):
    """What the harness may do on a host beyond swapping tor."""

    INSTALL_BUILD_DEPS = "install-build-deps"   # apt-get install the build dependencies
    BUILD = "build"                             # compile tor from pushed source


@dataclass(frozen=True)
class Host:
    """One relay host. ``key`` is a path to a private key file, never its contents."""

    name: str
    address: str
    port: int = 22
    user: str = "root"
    key: Path | None = None
    agent: bool = False
    known_hosts: Path = Path("~/.ssh/known_hosts")
    sudo: bool = False
    run: RunMode = RunMode.SYSTEMD
    unit: str = "tor@default"
    pid_file: PurePosixPath = PurePosixPath("/run/tor/tor.pid")
    tor_binary: PurePosixPath = PurePosixPath("/usr/bin/tor")
    torrc: PurePosixPath = PurePosixPath("/etc/tor/torrc")
    defaults_torrc: PurePosixPath | None = None
    data_dir: PurePosixPath = PurePosixPath("/var/lib/tor")
    install_dir: PurePosixPath = PurePosixPath("/opt/kist-harness")
    control_port: int | None = 9051
    control_socket: PurePosixPath | None = None
    require_bootstrap: bool = True
    connect_timeout_s: float = 15.0
    command_timeout_s: float = 300.0
    build_timeout_s: float = 3600.0
    verify_timeout_s: float = 300.0
    allow: frozenset[Permission] = field(default_factory=frozenset)
    # a local file of torrc lines added to every release's fragment (e.g. TestingTorNetwork,
    # DirAuthority and ORPort lines to join a private network); see harness.remote.fragment
    extra_torrc: Path | None = None

    def describe(self) -> str:
        return f"{self.name} ({self.user}@{self.address}:{self.port})"


@dataclass(frozen=True)
class Inventory:
    path: Path
    hosts: tuple[Host, ...]

    def get(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        known = ", ".join(h.name for h in self.hosts) or "none"
        raise InputError(f"{self.path}: no host named {name!r} in [hosts] (known: {known}); "
                         f"add a [hosts.{name}] table or use one of those names.")


# field → (type check, converter, what to write)
_PATH_FIELDS = {"pid_file", "tor_binary", "torrc", "defaults_torrc", "data_dir", "install_dir",
                "control_socket"}
_FLOAT_FIELDS = {"connect_timeout_s", "command_timeout_s", "build_timeout_s", "verify_timeout_s"}
_BOOL_FIELDS = {"agent", "sudo", "require_bootstrap"}
_STR_FIELDS = {"address", "user", "unit"}
_LOCAL_FIELDS = {"key", "known_hosts", "extra_torrc"}   # files on this machine, not the host
_KNOWN = ({"port", "run", "control_port", "allow"} | _LOCAL_FIELDS | _PATH_FIELDS
          | _FLOAT_FIELDS | _BOOL_FIELDS | _STR_FIELDS)


ENV = "KIST_HARNESS_INVENTORY"
DEFAULT = Path("inventory.toml")


def locate(given: Path | None) -> Path:
    """The inventory to use: ``--inventory``, else $KIST_HARNESS_INVENTORY, else ./inventory.toml.

    Read when called (not at import); when nothing fits, one error says what was tried.
    """
    if given is not None:
        return given   # load() names it if it cannot be read
    env = os.environ.get(ENV, "").strip()
    if env:
        if not Path(env).is_file():
            raise InputError(f"no inventory: --inventory was not given and ${ENV} names {env}, "
                             "which is not a file; fix the variable or pass --inventory FILE.")
        return Path(env)
    if DEFAULT.is_file():
        return DEFAULT
    raise InputError(f"no inventory: --inventory was not given, ${ENV} is not set and there is "
                     f"no {DEFAULT} in {Path.cwd()}; pass --inventory FILE (a TOML file of "
                     "[hosts.NAME] tables, see docs/remote.md).")


def load(path: Path) -> Inventory:
    """Read and validate an inventory file; InputError names file, table and field."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(f"inventory {path}: not UTF-8 text (byte {exc.start}: {exc.reason}); "
                         "an inventory is a TOML file, see docs/remote.md.") from None
    except OSError as exc:
        raise InputError(f"inventory {path}: cannot read it ({exc.strerror}); "
                         "give an existing TOML file with --inventory.") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"inventory {path}: not valid TOML: {exc}.") from exc
    return parse(data, path)


def parse(data: dict[str, Any], path: Path) -> Inventory:
    for key in data:
        if key not in {"defaults", "hosts"}:
            raise InputError(f"inventory {path}: unknown table [{key}]; only [defaults] and "
                             "[hosts.NAME] tables are allowed.")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise InputError(f"inventory {path}: [defaults] must be a table.")
    hosts_table = data.get("hosts")
    if not isinstance(hosts_table, dict) or not hosts_table:
        raise InputError(f"inventory {path}: no hosts; add at least one [hosts.NAME] table "
                         "with an address.")
    hosts = []
    for name, table in hosts_table.items():
        if not isinstance(table, dict):
            raise InputError(f"inventory {path}: hosts.{name} must be a table ([hosts.{name}]).")
        hosts.append(_host(name, {**defaults, **table}, path, base=path.parent))
    return Inventory(path, tuple(hosts))


def _host(name: str, raw: dict[str, Any], path: Path, base: Path) -> Host:
    where = f"inventory {path}, [hosts.{name}]"

    def bad(key: str, want: str) -> InputError:
        return InputError(f"{where}: field {key!r} = {raw[key]!r} is invalid: {want}.")

    for key in raw:
        if key not in _KNOWN:
            raise InputError(f"{where}: unknown field {key!r}; known fields: "
                             f"{', '.join(sorted(_KNOWN))}.")
    if "address" not in raw:
        raise InputError(f"{where}: field 'address' is missing; give the host name or IP.")
    kw: dict[str, Any] = {"name": name}
    for key in _STR_FIELDS & raw.keys():
        if not isinstance(raw[key], str) or not raw[key] or any(c.isspace() for c in raw[key]):
            raise bad(key, "write a non-empty string without spaces")
        kw[key] = raw[key]
    for key in _BOOL_FIELDS & raw.keys():
        if not isinstance(raw[key], bool):
            raise bad(key, "write true or false")
        kw[key] = raw[key]
    for key in _FLOAT_FIELDS & raw.keys():
        if isinstance(raw[key], bool) or not isinstance(raw[key], int | float) or raw[key] <= 0:
            raise bad(key, "write a positive number of seconds")
        kw[key] = float(raw[key])
    for key in _PATH_FIELDS & raw.keys():
        if not isinstance(raw[key], str) or not raw[key].startswith("/") or "'" in raw[key]:
            raise bad(key, "write an absolute path on the host (starting with /, no quotes)")
        kw[key] = PurePosixPath(raw[key])
    if "port" in raw:
        if isinstance(raw["port"], bool) or not isinstance(raw["port"], int) or not 0 < raw["port"] < 65536:
            raise bad("port", "write the SSH port, 1-65535")
        kw["port"] = raw["port"]
    for key in sorted(_LOCAL_FIELDS & raw.keys()):
        if not isinstance(raw[key], str) or not raw[key]:
            raise bad(key, "write a path to a file on this machine")
        try:
            p = Path(raw[key]).expanduser()
        except RuntimeError:  # ~user with no such user, or no home directory at all
            raise bad(key, "its ~ names no home directory on this machine; write the full path") from None
        kw[key] = p if p.is_absolute() else base / p
    if "run" in raw:
        try:
            kw["run"] = RunMode(raw["run"])
        except ValueError:
            raise bad("run", "write \"systemd\" or \"process\"") from None
    if "allow" in raw:
        values = raw["allow"]
        try:
            if not isinstance(values, list):
                raise ValueError
            kw["allow"] = frozenset(Permission(v) for v in values)
        except ValueError:
            raise bad("allow", "write a list drawn from "
                      + ", ".join(f'"{p.value}"' for p in Permission)) from None
    if "control_socket" in raw:
        kw["control_port"] = None
    if "control_port" in raw:
        if "control_socket" in raw:
            raise InputError(f"{where}: give either control_port or control_socket, not both.")
        cp = raw["control_port"]
        if isinstance(cp, bool) or not isinstance(cp, int) or not 0 < cp < 65536:
            raise bad("control_port", "write a TCP port, 1-65535 (it is bound to 127.0.0.1)")
        kw["control_port"] = cp
    if kw.get("key") is None and not kw.get("agent"):
        raise InputError(f"{where}: no credentials; set key = \"PATH\" (a private key file) "
                         "or agent = true (use the running ssh-agent).")
    return Host(**kw)
