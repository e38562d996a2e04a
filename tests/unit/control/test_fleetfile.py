"""The fleet file: what it accepts, and errors that name the file, table and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.control.fleetfile import load
from harness.errors import InputError


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "fleet.toml"
    p.write_text(text)
    return p


def test_direct_relays_with_defaults(tmp_path: Path) -> None:
    fleet = load(_write(tmp_path, """
[defaults]
ab = "KIST,Vanilla"
[relays.a]
control = "127.0.0.1:9051"
cookie = "a/cookie"
[relays.b]
control = "/run/tor/control"
ab = "KIST,KISTLite"
period = "5m"
"""))
    a, b = fleet.relays
    assert (a.name, a.control, a.ab, a.cookie) == ("a", "127.0.0.1:9051", "KIST,Vanilla", tmp_path / "a" / "cookie")
    assert (b.control, b.ab, b.period) == ("/run/tor/control", "KIST,KISTLite", "5m")
    assert fleet.inventory is None


@pytest.mark.parametrize(("text", "needle"), [
    ("[relays.a]\ncontrol = '127.0.0.1:9051'\nbogus = 1\n", "[relays.a]: unknown field 'bogus'"),
    ("[relays.a]\ncookie = 'x'\n", "[relays.a]: give `control"),
    ("[relays.a]\ncontrol = 'nohost:'\n", "[relays.a]: field 'control'"),
    ("[relays.a]\ncontrol = '127.0.0.1:1'\nab = 'KIST,'\n", "[relays.a]: field 'ab'"),
    ("[relays.a]\ncontrol = '127.0.0.1:1'\nperiod = 'soon'\n", "[relays.a]: field 'period'"),
    ("[relays.'a b']\ncontrol = '127.0.0.1:1'\n", "relay name 'a b'"),
    ("[relays]\n", "no relays"),
    ("relays = 3\n", "no relays"),
    ("[extra]\n", "unknown key 'extra'"),
    ("[relays.a]\nssh = 'h'\ncookie = 'c'\n", "drop `cookie`"),
    ("[relays.a\n", "not valid TOML"),
])
def test_bad_fleet_files_name_the_place(tmp_path: Path, text: str, needle: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(InputError) as err:
        load(path)
    assert str(path) in str(err.value) and needle in str(err.value)


def test_ssh_relays_are_checked_against_the_inventory(tmp_path: Path) -> None:
    inv = tmp_path / "inventory.toml"
    inv.write_text("[hosts.h1]\naddress = '192.0.2.1'\nagent = true\ncontrol_port = 9051\n")
    fleet = load(_write(tmp_path, "inventory = 'inventory.toml'\n[relays.r1]\nssh = 'h1'\n"))
    assert fleet.inventory == inv and fleet.relays[0].ssh == "h1"
    with pytest.raises(InputError, match=r"\[relays.r2\].*no host named 'h2'"):
        load(_write(tmp_path, "inventory = 'inventory.toml'\n[relays.r2]\nssh = 'h2'\n"))
    with pytest.raises(InputError, match=r"\[relays.r1\].*public address"):
        load(_write(tmp_path, "inventory = 'inventory.toml'\n[relays.r1]\nssh = 'h1'\ncontrol = '10.0.0.1:9051'\n"))
    other = tmp_path / "other.toml"
    with pytest.raises(InputError, match="keep one of the two"):
        load(_write(tmp_path, "inventory = 'inventory.toml'\n[relays.r1]\nssh = 'h1'\n"), other)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read it"):
        load(tmp_path / "none.toml")
