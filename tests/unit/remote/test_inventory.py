"""Inventory parsing: valid files become frozen records; every error names file, table, field."""

from __future__ import annotations

import dataclasses
from pathlib import Path, PurePosixPath

import pytest

from harness.errors import InputError
from harness.remote import inventory as inv

GOOD = """
[defaults]
user = "admin"
known_hosts = "kh"

[hosts.relay1]
address = "192.0.2.10"
key = "id_ed25519"
run = "process"
control_socket = "/run/tor/control"
allow = ["build"]
sudo = true
extra_torrc = "relay1.torrc"

[hosts.relay2]
address = "192.0.2.11"
port = 2222
agent = true
control_port = 9151
"""


def _load(tmp_path: Path, text: str) -> inv.Inventory:
    path = tmp_path / "inventory.toml"
    path.write_text(text)
    return inv.load(path)


def test_valid_inventory(tmp_path: Path) -> None:
    got = _load(tmp_path, GOOD)
    r1, r2 = got.get("relay1"), got.get("relay2")
    assert r1.user == "admin" and r1.key == tmp_path / "id_ed25519"
    assert r1.known_hosts == tmp_path / "kh"
    assert r1.run is inv.RunMode.PROCESS and r1.control_port is None
    assert r1.control_socket == PurePosixPath("/run/tor/control")
    assert r1.allow == frozenset({inv.Permission.BUILD}) and r1.sudo
    assert r2.port == 2222 and r2.agent and r2.key is None and r2.control_port == 9151
    assert r2.run is inv.RunMode.SYSTEMD
    assert r1.extra_torrc == tmp_path / "relay1.torrc" and r2.extra_torrc is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        r1.address = "x"  # type: ignore[misc]


@pytest.mark.parametrize("table, needle", [
    ('address = "h"\nkey = "k"\nport = 70000', "'port'"),
    ('address = "h"\nkey = "k"\nrun = "cron"', "'run'"),
    ('address = "h"\nkey = "k"\nallow = ["everything"]', "'allow'"),
    ('address = "h"\nkey = "k"\ntorrc = "etc/torrc"', "'torrc'"),
    ('address = "h"\nkey = "k"\ncontrol_port = 9051\ncontrol_socket = "/run/c"', "not both"),
    ('address = "h"\nkey = "k"\ncolour = "blue"', "unknown field 'colour'"),
    ('address = "h"', "no credentials"),
    ('key = "k"', "'address' is missing"),
    ('address = "h"\nkey = "k"\nconnect_timeout_s = -1', "'connect_timeout_s'"),
])
def test_errors_name_file_table_field(tmp_path: Path, table: str, needle: str) -> None:
    with pytest.raises(InputError) as err:
        _load(tmp_path, f"[hosts.r9]\n{table}\n")
    msg = str(err.value)
    assert str(tmp_path / "inventory.toml") in msg and "[hosts.r9]" in msg and needle in msg


def test_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not valid TOML"):
        _load(tmp_path, "[hosts\n")
    with pytest.raises(InputError, match="no hosts"):
        _load(tmp_path, "[defaults]\nuser = 'x'\n")
    with pytest.raises(InputError, match="unknown table"):
        _load(tmp_path, "[host.r]\naddress='h'\n")
    with pytest.raises(InputError, match="cannot read"):
        inv.load(tmp_path / "missing.toml")
    with pytest.raises(InputError, match="no host named 'nope'.*relay1, relay2"):
        _load(tmp_path, GOOD).get("nope")


def test_locate_tries_flag_then_environment_then_cwd(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(inv.ENV, raising=False)
    with pytest.raises(InputError) as err:
        inv.locate(None)
    msg = str(err.value)
    assert "--inventory was not given" in msg and f"${inv.ENV} is not set" in msg
    assert f"no inventory.toml in {tmp_path}" in msg
    (tmp_path / "inventory.toml").write_text(GOOD)
    assert inv.locate(None) == Path("inventory.toml")
    monkeypatch.setenv(inv.ENV, str(tmp_path / "missing.toml"))
    with pytest.raises(InputError, match="names .*missing.toml, which is not a file"):
        inv.locate(None)
    monkeypatch.setenv(inv.ENV, str(tmp_path / "inventory.toml"))
    assert inv.locate(None) == tmp_path / "inventory.toml"
    assert inv.locate(tmp_path / "given.toml") == tmp_path / "given.toml"
