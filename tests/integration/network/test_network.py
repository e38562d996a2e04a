"""Real private Tor networks on each backend: up, traffic, a killed node, nothing left after.

Needs stock tor (both backends) and a running Docker engine (docker backend), which
`kist-harness host setup` provides; images are built by the code under test (cached).
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from harness.config import Network, Role, load_scenario
from harness.errors import StepError
from harness.network import lifecycle, ready
from harness.network.lifecycle import RUN_PREFIX
from harness.traffic import profiles
from harness.traffic.clients import read_results

pytestmark = pytest.mark.integration

SMALL = """
[network]
name = "{name}"
bootstrap_timeout_s = 90

[authorities]
name = "{name}a"
count = 3
vote_guard = true

[[relays]]
name = "{name}x"
role = "exit"
count = 2

[[clients]]
name = "{name}c"
profile = "web"
{client_shaping}

[[fileservers]]
name = "{name}s"
{server_shaping}

[traffic]
duration_s = 6
pause_scale = 0.01
size_scale = 0.25
max_downloads = 4
"""


def _scenario(tmp_path: Path, name: str, server_shaping: str = "", client_shaping: str = "") -> Network:
    path = tmp_path / f"{name}.toml"
    path.write_text(SMALL.format(name=name, server_shaping=server_shaping, client_shaping=client_shaping))
    return load_scenario(path)


def _tor_pids(marker: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True, check=False).stdout
    return [int(p) for p in out.split()]


def _docker_leftovers(run_id: str) -> list[str]:
    from harness.network import docker
    return docker.leftovers(run_id)


def _exercise(net: Network, backend: str, tmp_path: Path, kill: Callable[[Any, Any], None],
              inspect: Callable[[Any], None] = lambda handle: None) -> tuple[Path, str]:
    """Bring up, inspect, run traffic, kill the exit during traffic; return run dir (gone by now) and id."""
    with lifecycle.up(net, backend) as handle:
        inspect(handle)
        run_dir = handle.run_dir
        assert run_dir.is_dir() and run_dir.name.startswith(RUN_PREFIX)
        assert all(n.cookie_path.is_file() for n in handle.nodes)
        assert all(n.fingerprint and len(n.fingerprint) == 40 for n in handle.nodes if n.role.is_relay)
        statuses = {s.name: s for s in ready.status(handle)}
        assert all(s.bootstrap == 100 for s in statuses.values())
        assert "Exit" in statuses[f"{net.name}x0"].flags

        summary = profiles.run_profiles(handle, net, tmp_path / "traffic.jsonl", seed=7)
        results = read_results(summary.path)
        assert summary.downloads == len(results) >= 2
        ok = [d for d in results if d.outcome == "ok"]
        assert ok, [d.error for d in results]
        assert all(d.size == 80 * 1024 and 0 < (d.ttfb_s or 0) <= (d.ttlb_s or 0) for d in ok)

        exit_node = handle.by_role(Role.EXIT)[0]
        threading.Timer(1.5, kill, (handle, exit_node)).start()
        endless = replace(net, traffic=replace(net.traffic, duration_s=60, max_downloads=0))
        t0 = time.monotonic()
        with pytest.raises(StepError) as during:
            profiles.run_profiles(handle, endless, tmp_path / "traffic2.jsonl", seed=8)
        assert time.monotonic() - t0 < 30  # stopped early by the watcher, not by duration_s
        assert f"node(s) {exit_node.name} stopped during traffic" in str(during.value)
        deadline = time.monotonic() + 15
        while not lifecycle.dead_nodes(handle) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert lifecycle.dead_nodes(handle) == [exit_node.name]
        with pytest.raises(StepError) as info:
            lifecycle.check_alive(handle)
        assert exit_node.name in str(info.value) and "last log lines" in str(info.value)
    return run_dir, handle.run_id


def test_local_network_up_traffic_kill_and_clean(tmp_path: Path) -> None:
    net = _scenario(tmp_path, "itl")

    def kill(handle, node):  # type: ignore[no-untyped-def]
        os.kill(node.pid, signal.SIGKILL)

    run_dir, _ = _exercise(net, "local", tmp_path, kill)
    assert not run_dir.exists()
    assert _tor_pids(str(run_dir)) == []


def test_local_refuses_required_shaping(tmp_path: Path) -> None:
    net = _scenario(tmp_path, "itr", server_shaping="[fileservers.shaping]\nrate_mbit = 1")
    with pytest.raises(Exception, match="local backend runs plain processes"):
        lifecycle.start(net, "local")
    assert not list(Path(tempfile.gettempdir()).glob(f"{RUN_PREFIX}itr-*"))


def test_failed_start_leaves_nothing(tmp_path: Path) -> None:
    """A patched binary that exits at once: a clear error naming the nodes, then a clean slate."""
    _scenario(tmp_path, "itf")
    path = tmp_path / "itf.toml"
    path.write_text(path.read_text().replace('role = "exit"', 'role = "exit"\nbinary = "patched"'))
    net = load_scenario(path)
    with pytest.raises(StepError) as info:
        lifecycle.start(net, "local", patched=Path("/bin/false"))
    msg = str(info.value)
    assert "itfx0, itfx1" in msg and "stopped while bootstrapping" in msg and "last log lines" in msg, msg
    assert not list(Path(tempfile.gettempdir()).glob(f"{RUN_PREFIX}itf-*"))
    assert _tor_pids(f"{RUN_PREFIX}itf-") == []


def _docker_ok() -> bool:
    from harness.host import docker_running
    return docker_running()


@pytest.mark.skipif(not os.path.exists("/var/run/docker.sock"), reason="no Docker engine socket here")
def test_docker_network_shaped_up_traffic_kill_and_clean(tmp_path: Path) -> None:
    if not _docker_ok():
        pytest.skip("Docker engine not running: run `kist-harness host setup` as root")
    from harness.network import shaping

    net = _scenario(tmp_path, "itd",
                    server_shaping="[fileservers.shaping]\nrate_mbit = 1\nlatency_ms = 5\noptional = true",
                    client_shaping="[clients.shaping]\nloss_percent = 0.1")
    caps = shaping.detect()
    measured: list[float] = []

    def inspect(handle):  # type: ignore[no-untyped-def]
        # Shaping, by measurement: the client container times a direct download from the
        # server container, whose egress is a 1 Mbit/s tbf.
        recs = {r.node: r for r in handle.shaping}
        assert recs["itds"].rate_mbit == 1.0
        assert recs["itds"].skipped == (() if caps.netem else ("latency",))
        assert recs["itdc"].loss_percent == 0.1
        rules = subprocess.run(["docker", "exec", handle.clients[0].container, "iptables", "-S", "OUTPUT"],
                               check=True, capture_output=True, text=True).stdout
        assert "--mode random --probability 0.001" in rules, rules
        measured.append(_timed_mbit(handle, 384 * 1024))

    def kill(handle, node):  # type: ignore[no-untyped-def]
        subprocess.run(["docker", "kill", node.container], check=True, capture_output=True)

    run_dir, run_id = _exercise(net, "docker", tmp_path, kill, inspect)
    print(f"1 Mbit/s tbf measured: {measured[0]:.3f} Mbit/s")
    assert 0.8 <= measured[0] <= 1.1, f"1 Mbit/s tbf carried {measured[0]:.3f} Mbit/s"
    assert not run_dir.exists()
    assert _docker_leftovers(run_id) == []


def _timed_mbit(handle, size: int) -> float:  # type: ignore[no-untyped-def]
    client = handle.clients[0]
    server = handle.servers[0]
    script = ("import time,urllib.request as u;t=time.monotonic();"
              f"n=len(u.urlopen('http://{server.host}:{server.port}/bytes/{size}').read());"
              "print(n, time.monotonic()-t)")
    out = subprocess.run(["docker", "exec", client.container, "python3", "-c", script],
                         check=True, capture_output=True, text=True, timeout=60).stdout.split()
    assert int(out[0]) == size
    return size * 8 / float(out[1]) / 1e6


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_cli_interrupted_during_bootstrap_cleans_up(tmp_path: Path, sig: signal.Signals) -> None:
    """`net up` stopped mid-bootstrap (Ctrl-C, kill, hang-up) exits 128+signum, leaves no process, dir or state."""
    net = _scenario(tmp_path, "iti")
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    cli = Path(os.environ.get("VIRTUAL_ENV", "/root/venv")) / "bin" / "kist-harness"
    argv = [str(cli) if cli.exists() else "kist-harness", "net", "up", str(tmp_path / "iti.toml")]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not _tor_pids(f"{RUN_PREFIX}iti-") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _tor_pids(f"{RUN_PREFIX}iti-"), "tor never started"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + sig, err
    assert "interrupted" in err
    assert _tor_pids(f"{RUN_PREFIX}iti-") == []
    assert not list(Path(tempfile.gettempdir()).glob(f"{RUN_PREFIX}iti-*"))
    assert not (tmp_path / "state" / "kist-harness" / "net" / f"{net.name}.json").exists()
