"""The inventory's other ways in: a non-root user with `sudo = true`, and a key held by ssh-agent.

Same relay host container as the other tests (docker/sshd): the user `kist` has
passwordless sudo and the same authorized key; the agent is a real `ssh-agent`.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from harness.errors import StepError
from harness.remote import deploy, ssh

pytestmark = pytest.mark.integration
RelayHost = Any  # conftest.py's fixture type


def test_sudo_user_deploys_and_rolls_back(relay_host: RelayHost, patched_build: Any) -> None:
    rh = relay_host
    host = replace(rh.host, user="kist", sudo=True)
    with ssh.connect(host) as session:
        # every command runs through `sudo -n`: as root, on behalf of kist
        assert session.run("id -un; echo $SUDO_USER").stdout.split() == ["root", "kist"]
        out = deploy.push_binary(session, patched_build.tor, deploy.Settings("KISTLite"),
                                 patch_hash=patched_build.series_hash)
        assert out.verification.schedulers == "KISTLite"
        assert rh.consistent() == out.release.id
        deploy.rollback(session)
    assert rh.consistent() == "stock"
    # the release files arrived intact through the sudo path (no SFTP as root)
    assert rh.sh(f"sha256sum /opt/kist-harness/releases/{out.release.id}/tor").split()[0] == out.release.sha256


def test_key_from_ssh_agent(relay_host: RelayHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sock = tmp_path / "agent.sock"
    started = subprocess.run(["ssh-agent", "-a", str(sock)], capture_output=True, text=True, check=True)
    match = re.search(r"SSH_AGENT_PID=(\d+)", started.stdout)
    assert match, started.stdout
    try:
        subprocess.run(["ssh-add", "-q", str(relay_host.host.key)], check=True, capture_output=True,
                       env={**os.environ, "SSH_AUTH_SOCK": str(sock)})
        host = replace(relay_host.host, key=None, agent=True)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        with ssh.connect(host) as session:
            assert session.run("id -un").stdout.strip() == "root"
        monkeypatch.delenv("SSH_AUTH_SOCK")   # no agent: refused with a message naming it
        with pytest.raises(StepError, match="no ssh-agent answers"), ssh.connect(host):
            pass
    finally:
        os.kill(int(match.group(1)), signal.SIGTERM)
