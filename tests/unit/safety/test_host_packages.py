"""`kist-harness host setup` names each Debian package once (parts share tor, iptables, ...)."""

from harness import host


def test_every_part_together_names_each_package_once() -> None:
    parts = tuple(host.PACKAGES)
    wanted = host.packages_for(parts)
    assert len(wanted) == len(set(wanted))
    assert set(wanted) == {pkg for part in parts for pkg in host.PACKAGES[part]}


def test_parts_keep_their_order() -> None:
    first, *rest = tuple(host.PACKAGES)
    assert host.packages_for((first, *rest))[: len(host.PACKAGES[first])] == list(dict.fromkeys(host.PACKAGES[first]))
