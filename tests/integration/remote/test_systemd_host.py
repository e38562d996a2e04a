"""Deploy to a relay host whose tor is Debian's tor@default unit, run by a real systemd.

The host container runs systemd as PID 1 (docker/sshd-systemd). The deploy goes through
`systemctl` and a drop-in that replaces only the unit's ExecStart, so Debian's own
ExecStartPre steps, user switch and sandboxing (ProtectSystem, PrivateTmp, ...) still
apply; Type=notify means the pushed tor must signal readiness (it links libsystemd).
The release joins the private network and bootstraps; a rollback puts the unit back
exactly as packaged.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from typing import Any

import pytest

from harness.remote import deploy, ssh
from harness.remote.tunnel import open_control_tunnel

pytestmark = pytest.mark.integration
SystemdRelay = Any  # conftest.py's fixture type


def test_systemd_unit_deploy_verify_and_rollback(systemd_relay: SystemdRelay, patched_build: Any) -> None:
    sr = systemd_relay
    assert sr.unit_exe() == "/usr/bin/tor", sr.sh("systemctl status tor@default --no-pager")
    t0 = time.monotonic()
    with ssh.connect(sr.host) as session:
        out = deploy.push_binary(session, patched_build.tor, deploy.Settings("KIST"),
                                 patch_hash=patched_build.series_hash)
    print(f"\n[remote] deploy to a systemd host: {time.monotonic() - t0:.1f} s, bootstrap "
          f"{out.verification.bootstrap}% after {out.verification.bootstrap_s:.1f} s")
    v = out.verification
    assert v.bootstrap == 100 and v.schedulers == "KIST" and v.patch_hash == patched_build.series_hash
    release = out.release.id
    assert sr.unit_exe() == f"/opt/kist-harness/releases/{release}/tor"
    assert sr.sh("systemctl is-active tor@default").strip() == "active"
    dropin = sr.sh("cat /etc/systemd/system/tor@default.service.d/kist-harness.conf")
    assert "ExecStart=/opt/kist-harness/current/tor " in dropin and "ExecStart=\n" in dropin  # current -> release
    # Debian's unit still applies: tor dropped to its user, and the unit's sandbox is in force
    assert sr.sh("ps -o user= -p $(systemctl show -p MainPID --value tor@default)").strip() == "debian-tor"
    with ssh.connect(sr.host) as session, open_control_tunnel(sr.host, session=session) as tunnel, \
            tunnel.controller() as ctl:
        assert ctl.get_conf("Schedulers") == "KIST"
        assert "KIST_RUN" in ctl.get_info("events/names").split()

    with ssh.connect(sr.host) as session:
        state = deploy.rollback(session)
    assert state.get("current") == "stock" or sr.sh("basename $(readlink /opt/kist-harness/current)").strip() == "stock"
    deadline = time.monotonic() + 60
    while sr.unit_exe() != "/usr/bin/tor" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert sr.unit_exe() == "/usr/bin/tor", sr.sh("journalctl -u tor@default -n 20 --no-pager")
    assert sr.sh("test -e /etc/systemd/system/tor@default.service.d/kist-harness.conf || echo gone").strip() == "gone"


@pytest.mark.skipif(not os.environ.get("KIST_HARNESS_SLOW_TESTS"),
                    reason="builds tor on the host (several CPU-minutes); set KIST_HARNESS_SLOW_TESTS=1")
def test_build_on_a_systemd_host_from_source_and_patches(systemd_relay: SystemdRelay, patched_build: Any) -> None:
    """`deploy push --source`: Debian's tarball and patches/ built on the host, with libsystemd."""
    from harness.build import default_cache_dir, default_patches_dir, load_series

    sr = systemd_relay
    tarball = next((default_cache_dir() / "sources" / "debian").glob("tor_*.orig.tar.gz"))
    series = load_series(default_patches_dir())
    host = replace(sr.host, allow=frozenset({deploy.Permission.BUILD, deploy.Permission.INSTALL_BUILD_DEPS}),
                   build_timeout_s=1800)
    t0 = time.monotonic()
    with ssh.connect(host) as session:
        out = deploy.push_source(session, tarball, [p.path for p in series.patches], deploy.Settings("KISTLite"),
                                 patch_hash=patched_build.series_hash)
        print(f"\n[remote] build on a systemd host and deploy: {time.monotonic() - t0:.0f} s")
        v = out.verification
        assert v.bootstrap == 100 and v.schedulers == "KISTLite" and v.patch_events
        assert sr.unit_exe() == f"/opt/kist-harness/releases/{out.release.id}/tor"
        deploy.rollback(session)
