"""Finding a Swarm task's network namespace from the pid its engine reports (harness.network.netns).

The parsing is checked on texts; the search on a real process in a real namespace of its
own (root only: it needs `unshare --net` and `ip`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from harness.network import netns


def test_nspid_lists_the_pid_in_each_namespace_from_the_hosts_down() -> None:
    status = "Name:\ttor\nPid:\t4242\nNSpid:\t4242\t17\t1\nPPid:\t1\n"
    assert netns.ns_pids(status) == (4242, 17, 1)
    assert netns.ns_pids("Name:\tx\n") == ()
    assert netns.ns_pids("NSpid:\tnot-a-number\n") == ()


def test_candidates_match_the_host_pid_or_the_one_a_level_below(tmp_path: Path) -> None:
    for pid, nspid in [(100, "100"), (200, "200\t100\t1"), (300, "300\t7\t100"), (400, "400\t55")]:
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "status").write_text(f"Pid:\t{pid}\nNSpid:\t{nspid}\n")
    (tmp_path / "self").mkdir()
    # 100 is itself; 200 is pid 100 of an engine running in a container; 300 only two levels down
    assert netns.candidates(100, tmp_path) == [100, 200]
    assert netns.candidates(55, tmp_path) == [400]
    assert netns.candidates(9, tmp_path) == []


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("nsenter"),
                    reason="needs root, unshare and nsenter")
def test_a_process_in_its_own_namespace_is_found_by_its_address_and_only_there() -> None:
    script = ("ip link set lo up && ip addr add 10.213.7.9/32 dev lo && "
              "echo up && exec sleep 30")
    proc = subprocess.Popen(["unshare", "--net", "sh", "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "up"
        assert netns.find(proc.pid, "10.213.7.9") == proc.pid
        assert netns.find(proc.pid, "10.213.7.10") is None   # the address decides, not the pid alone
        assert "10.213.7.9" not in netns.addresses(os.getpid())
        res = subprocess.run([*netns.prefix(proc.pid), "sysctl", "-n", "net.ipv4.tcp_congestion_control"],
                             capture_output=True, text=True, check=True)
        assert res.stdout.strip()   # a namespace's own sysctls are reachable through the prefix
    finally:
        proc.kill()
        proc.wait()
    time.sleep(0.05)
