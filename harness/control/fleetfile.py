"""The fleet file: which relays one ``kist-harness collect --fleet`` collects from.

Example::

    inventory = "inventory.toml"     # optional: the SSH inventory naming `ssh` hosts

    [defaults]                       # any relay field, applied to every relay
    ab = "KIST,Vanilla"

    [relays.local1]
    control = "127.0.0.1:9051"      # a control port (or ControlSocket path) reached directly
    cookie = "/var/lib/tor/control_auth_cookie"   # optional: default, what tor announces

    [relays.relay2]
    ssh = "relay2"                   # a [hosts.relay2] of the inventory: reached through SSH
    control = "9051"                 # optional with ssh: default, the inventory's control endpoint

Validated whole before anything starts; every error names the file, the table and the field.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import InputError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_STR_FIELDS = {"control", "ssh", "ab", "period"}
_PATH_FIELDS = {"cookie", "password_file"}
_KNOWN = _STR_FIELDS | _PATH_FIELDS


@dataclass(frozen=True)
class RelaySpec:
    """One relay of the fleet: where its control port is, how to authenticate, its A/B arms."""

    name: str
    control: str | None = None        # HOST:PORT or a socket path; with ssh: on that host
    ssh: str | None = None            # an inventory host name: reach `control` through SSH
    cookie: Path | None = None
    password_file: Path | None = None
    ab: str | None = None             # overrides --ab for this relay
    period: str | None = None         # overrides --period for this relay

    def describe(self) -> str:
        where = self.control or "the inventory's control endpoint"
        return f"{self.name} ({where} via SSH to {self.ssh})" if self.ssh else f"{self.name} ({where})"


@dataclass(frozen=True)
class Fleet:
    path: Path
    relays: tuple[RelaySpec, ...]
    inventory: Path | None = None     # the SSH inventory, when a relay names `ssh`


def load(path: Path, inventory: Path | None = None) -> Fleet:
    """Read and validate a fleet file; InputError names the file, table and field.

    ``inventory`` (``--inventory``) names the SSH inventory when the file does not."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise InputError(f"fleet file {path}: cannot read it ({exc.strerror}); give an existing "
                         "TOML file with --fleet (see docs/fleet.md).") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"fleet file {path}: not valid TOML: {exc}.") from exc
    return parse(data, path, inventory)


def parse(data: dict[str, Any], path: Path, default_inventory: Path | None = None) -> Fleet:
    for key in data:
        if key not in {"inventory", "defaults", "relays"}:
            raise InputError(f"fleet file {path}: unknown key {key!r}; only `inventory = \"FILE\"`, "
                             "[defaults] and [relays.NAME] tables are allowed.")
    inventory = default_inventory
    if "inventory" in data:
        if not isinstance(data["inventory"], str) or not data["inventory"]:
            raise InputError(f"fleet file {path}: `inventory` must be a path to an SSH inventory file.")
        p = Path(data["inventory"]).expanduser()
        inventory = p if p.is_absolute() else path.parent / p
        if default_inventory is not None and default_inventory.resolve() != inventory.resolve():
            raise InputError(f"fleet file {path} names inventory = {inventory}, but --inventory gives "
                             f"{default_inventory}; keep one of the two.")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise InputError(f"fleet file {path}: [defaults] must be a table.")
    table = data.get("relays")
    if not isinstance(table, dict) or not table:
        raise InputError(f"fleet file {path}: no relays; add at least one [relays.NAME] table with "
                         "a `control` address or an `ssh` host.")
    relays = []
    for name, raw in table.items():
        if not isinstance(raw, dict):
            raise InputError(f"fleet file {path}: relays.{name} must be a table ([relays.{name}]).")
        if not _NAME.fullmatch(name):
            raise InputError(f"fleet file {path}: relay name {name!r} is not usable as a run id: "
                             "use letters, digits, '_', '.' and '-' (at most 64).")
        relays.append(_relay(name, {**defaults, **raw}, path))
    if any(r.ssh for r in relays):
        _check_ssh_hosts(relays, inventory, path)
    return Fleet(path, tuple(relays), inventory)


def _relay(name: str, raw: dict[str, Any], path: Path) -> RelaySpec:
    where = f"fleet file {path}, [relays.{name}]"
    for key in raw:
        if key not in _KNOWN:
            raise InputError(f"{where}: unknown field {key!r}; known fields: {', '.join(sorted(_KNOWN))}.")
    kw: dict[str, Any] = {"name": name}
    for key in _STR_FIELDS & raw.keys():
        if not isinstance(raw[key], str) or not raw[key].strip():
            raise InputError(f"{where}: field {key!r} = {raw[key]!r} is invalid: write a non-empty string.")
        kw[key] = raw[key].strip()
    for key in _PATH_FIELDS & raw.keys():
        if not isinstance(raw[key], str) or not raw[key]:
            raise InputError(f"{where}: field {key!r} = {raw[key]!r} is invalid: write a path to a file "
                             "on this machine.")
        p = Path(raw[key]).expanduser()
        kw[key] = p if p.is_absolute() else path.parent / p
    if "control" not in kw and "ssh" not in kw:
        raise InputError(f"{where}: give `control = \"HOST:PORT\"` (or a ControlSocket path) or "
                         "`ssh = \"HOST\"` (a host of the SSH inventory).")
    if "ssh" in kw and "cookie" in kw:
        raise InputError(f"{where}: `cookie` names a file on this machine, but the relay is reached "
                         "through SSH, whose cookie is fetched from the host; drop `cookie`.")
    if "control" in kw and "ssh" not in kw:
        from harness.control.transport import parse_control_address

        try:
            parse_control_address(kw["control"])
        except InputError as exc:
            raise InputError(f"{where}: field 'control': {exc}") from None
    if "ab" in kw:
        from harness.control import abtest

        try:
            abtest.parse_arms(kw["ab"])
        except InputError as exc:
            raise InputError(f"{where}: field 'ab': {exc}") from None
    if "period" in kw:
        from harness.commands.collect import parse_duration

        try:
            parse_duration(kw["period"], "period")
        except InputError as exc:
            raise InputError(f"{where}: field 'period': {exc}") from None
    return RelaySpec(**kw)


def _check_ssh_hosts(relays: list[RelaySpec], inventory: Path | None, path: Path) -> None:
    """Every `ssh` names a host of the inventory, and its `control` is a loopback target."""
    from harness.remote import inventory as inv
    from harness.remote.tunnel import ControlTarget

    hosts = inv.load(inv.locate(inventory))
    for r in relays:
        if r.ssh is None:
            continue
        try:
            host = hosts.get(r.ssh)
            ControlTarget.parse(r.control, host)
        except InputError as exc:
            raise InputError(f"fleet file {path}, [relays.{r.name}]: {exc}") from None
