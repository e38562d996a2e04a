"""The pure parts of deploy/tunnel/ssh: torrc fragment, option checks, targets, errors."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from harness.commands.deploy import series
from harness.errors import InputError, StepError
from harness.remote import deploy, ssh
from harness.remote import fragment as frag
from harness.remote.inventory import Host
from harness.remote.tunnel import ControlTarget

HOST = Host(name="r", address="192.0.2.1", key=Path("/k"))


def test_fragment_binds_control_to_loopback_with_cookie() -> None:
    text = frag.fragment(HOST, deploy.Settings("KISTLite", (("KISTSchedRunInterval", "2"),)))
    lines = text.splitlines()
    assert "Schedulers KISTLite" in lines and "KISTSchedRunInterval 2" in lines
    assert "ControlPort 127.0.0.1:9051" in lines and "CookieAuthentication 1" in lines
    assert not [x for x in lines if x.startswith("ControlPort") and "127.0.0.1" not in x]


def test_fragment_with_socket_disables_tcp_control() -> None:
    host = Host(name="r", address="a", key=Path("/k"), control_port=None,
                control_socket=PurePosixPath("/run/tor/c"))
    lines = frag.fragment(host, deploy.Settings()).splitlines()
    assert "ControlPort 0" in lines and "ControlSocket /run/tor/c" in lines


@pytest.mark.parametrize("options", [(("ControlPort", "0.0.0.0:9051"),), (("CookieAuthFile", "/x"),),
                                     (("HashedControlPassword", "16:AB"),), (("Bad Key", "1"),),
                                     (("Log", "notice\nControlPort 0.0.0.0:1"),)])
def test_settings_cannot_open_or_weaken_control(options: tuple[tuple[str, str], ...]) -> None:
    with pytest.raises(InputError):
        frag.check_settings(deploy.Settings("KIST", options))


def test_extra_torrc_goes_before_the_deploys_own_lines(tmp_path: Path) -> None:
    extra = tmp_path / "join.torrc"
    extra.write_text("# join the test network\nTestingTorNetwork 1\n\nDirAuthority a orport=1 x 10.0.0.2:2 AB\n"
                     "ORPort 10.0.0.9:24001\n")
    host = Host(name="r", address="a", key=Path("/k"), extra_torrc=extra)
    lines = frag.fragment(host, deploy.Settings("KIST")).splitlines()
    assert lines.index("TestingTorNetwork 1") < lines.index("Schedulers KIST") < lines.index(
        "ControlPort 127.0.0.1:9051")
    assert "ORPort 10.0.0.9:24001" in lines and "# join the test network" in lines
    plain = frag.fragment(HOST, deploy.Settings("KIST"))
    assert frag.release_id(frag.release_files(host, deploy.Settings(), b"tor", "m", "", None)) != \
        frag.release_id(frag.release_files(HOST, deploy.Settings(), b"tor", "m", "", None)), plain


def test_defaults_layer_merges_the_host_files_as_tor_layers_them() -> None:
    """Debian's service defaults say SocksPort 9050; a relay's torrc says SocksPort 0: one wins."""
    host = Host(name="r", address="a", key=Path("/k"),
                defaults_torrc=PurePosixPath("/usr/share/tor/tor-service-defaults-torrc"))
    defaults = "DataDirectory /var/lib/tor\nSocksPort 9050\nsocksport unix:/run/tor/socks\nUser debian-tor\n"
    torrc = "# a relay\nSOCKSPort 0\nORPort 9001\n"
    lines = frag.defaults_layer(host, torrc, defaults).splitlines()
    options = [line for line in lines if line and not line.startswith("#")]
    assert options == ["DataDirectory /var/lib/tor", "User debian-tor", "SOCKSPort 0", "ORPort 9001"]
    # without a defaults file the host's torrc is the layer; a changed file is another release
    assert [x for x in frag.defaults_layer(HOST, torrc, None).splitlines() if not x.startswith("#")] == \
        ["SOCKSPort 0", "ORPort 9001"]
    assert frag.release_id(frag.release_files(HOST, deploy.Settings(), b"tor", "m", torrc, None)) != \
        frag.release_id(frag.release_files(HOST, deploy.Settings(), b"tor", "m", torrc + "Nickname x\n", None))


@pytest.mark.parametrize("line, needle", [
    ("ControlPort 0.0.0.0:9051", "set by the deploy itself"),
    ("cookieauthfile /tmp/x", "set by the deploy itself"),
    ("HashedControlPassword 16:AB", "set by the deploy itself"),
    ("Schedulers Vanilla", "--schedulers"),
    ("%include /etc/tor/other", "not allowed"),
    ("ORPort", "Key value"),
    ("Bad-Key 1", "Key value"),
])
def test_extra_torrc_refuses_control_and_odd_lines(tmp_path: Path, line: str, needle: str) -> None:
    extra = tmp_path / "x.torrc"
    extra.write_text(f"ORPort 1\n{line}\n")
    host = Host(name="r", address="a", key=Path("/k"), extra_torrc=extra)
    with pytest.raises(InputError, match=needle) as err:
        frag.check(host, deploy.Settings())
    assert f"{extra}, line 2" in str(err.value)


def test_extra_torrc_missing_names_host_and_file(tmp_path: Path) -> None:
    host = Host(name="r", address="a", key=Path("/k"), extra_torrc=tmp_path / "gone.torrc")
    with pytest.raises(InputError, match="host r: extra_torrc .*gone.torrc cannot be read"):
        frag.fragment(host, deploy.Settings())


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


def test_collect_ssh_without_inventory_names_what_was_tried(tmp_path: Path) -> None:
    """The CLI's error (no traceback) lists the flag, the variable and the file it looked for."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "KIST_HARNESS_INVENTORY"}
    res = subprocess.run([sys.executable, "-m", "harness.cli", "collect", "--ssh", "relay1",
                          "--duration", "5s", "--out", str(tmp_path / "s.sqlite")],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    assert res.returncode == 2, res.stderr
    assert "--inventory was not given" in res.stderr and "$KIST_HARNESS_INVENTORY is not set" in res.stderr
    assert "no inventory.toml in" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "s.sqlite").exists()
    (tmp_path / "inv.toml").write_text('[hosts.other]\naddress = "192.0.2.1"\nkey = "k"\n')
    res = subprocess.run([sys.executable, "-m", "harness.cli", "collect", "--ssh", "relay1",
                          "--inventory", str(tmp_path / "inv.toml"), "--out", str(tmp_path / "s.sqlite")],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    assert res.returncode == 2 and "no host named 'relay1'" in res.stderr and "other" in res.stderr
    res = subprocess.run([sys.executable, "-m", "harness.cli", "collect", "--control", "127.0.0.1:1",
                          "--inventory", str(tmp_path / "inv.toml"), "--out", str(tmp_path / "s.sqlite")],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    assert res.returncode == 2 and "--inventory names the host for --ssh HOST" in res.stderr
