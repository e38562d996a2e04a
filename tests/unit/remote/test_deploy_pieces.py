"""The pure parts of deploy/tunnel/ssh: torrc fragment, option checks, targets, errors."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from harness.commands.deploy import series
from harness.errors import InputError, StepError
from harness.remote import deploy, ssh
from harness.remote.inventory import Host
from harness.remote.tunnel import ControlTarget

HOST = Host(name="r", address="192.0.2.1", key=Path("/k"))


def test_fragment_binds_control_to_loopback_with_cookie() -> None:
    text = deploy.fragment(HOST, deploy.Settings("KISTLite", (("KISTSchedRunInterval", "2"),)))
    lines = text.splitlines()
    assert "Schedulers KISTLite" in lines and "KISTSchedRunInterval 2" in lines
    assert "ControlPort 127.0.0.1:9051" in lines and "CookieAuthentication 1" in lines
    assert not [x for x in lines if x.startswith("ControlPort") and "127.0.0.1" not in x]


def test_fragment_with_socket_disables_tcp_control() -> None:
    host = Host(name="r", address="a", key=Path("/k"), control_port=None,
                control_socket=PurePosixPath("/run/tor/c"))
    lines = deploy.fragment(host, deploy.Settings()).splitlines()
    assert "ControlPort 0" in lines and "ControlSocket /run/tor/c" in lines


@pytest.mark.parametrize("options", [(("ControlPort", "0.0.0.0:9051"),), (("CookieAuthFile", "/x"),),
                                     (("HashedControlPassword", "16:AB"),), (("Bad Key", "1"),),
                                     (("Log", "notice\nControlPort 0.0.0.0:1"),)])
def test_settings_cannot_open_or_weaken_control(options: tuple[tuple[str, str], ...]) -> None:
    with pytest.raises(InputError):
        deploy._check_settings(deploy.Settings("KIST", options))


def test_control_target_refuses_public_addresses() -> None:
    assert ControlTarget.parse("9051", HOST) == ControlTarget(port=9051)
    assert ControlTarget.parse("127.0.0.1:9151", HOST) == ControlTarget(port=9151)
    assert ControlTarget.parse("/run/tor/control", HOST).socket_path == PurePosixPath("/run/tor/control")
    assert ControlTarget.parse(None, HOST) == ControlTarget(port=9051)
    for bad in ("0.0.0.0:9051", "192.0.2.1:9051", "99999", "x"):
        with pytest.raises(InputError, match="never reached on a public address"):
            ControlTarget.parse(bad, HOST)


def test_elf_architecture(tmp_path: Path) -> None:
    assert deploy.elf_architecture(Path("/bin/sh")) in {"x86_64", "aarch64"}
    script = tmp_path / "tor"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(InputError, match="not an ELF"):
        deploy.elf_architecture(script)


def test_on_hosts_one_result_per_host_one_error_naming_failures() -> None:
    hosts = [Host(name=n, address="a", key=Path("/k")) for n in ("a", "b", "c")]

    def work(h: Host) -> str:
        if h.name != "b":
            raise StepError(f"{h.name} broke")
        return "fine"

    with pytest.raises(ssh.HostsFailed) as err:
        ssh.on_hosts(hosts, work)
    assert err.value.results == {"b": "fine"}
    assert set(err.value.failures) == {"a", "c"}
    assert "2 of 3 hosts failed: a, c" in str(err.value) and "a broke" in str(err.value)
    assert ssh.on_hosts(hosts[1:2], work) == {"b": "fine"}


def test_series(tmp_path: Path) -> None:
    (tmp_path / "one.patch").write_text("x")
    (tmp_path / "two.patch").write_text("y")
    (tmp_path / "series").write_text("# comment\ntwo.patch -p1\none.patch\n\n")
    assert series(tmp_path) == [tmp_path / "two.patch", tmp_path / "one.patch"]
    (tmp_path / "series").write_text("gone.patch\n")
    with pytest.raises(InputError, match="gone.patch"):
        series(tmp_path)
    assert series(None) == []
