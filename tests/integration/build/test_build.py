"""`kist-harness build` for real: Tor from Debian's source + patches/, its suites, the events.

The first test builds Tor if the cache does not have this build yet (about 5 min on two
cores); every later use in the run is a cache hit. Needs `kist-harness host setup`
(build packages, deb-src lines) and root or a warm cache.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from harness import build
from harness.errors import CommandFailed

pytestmark = pytest.mark.integration

PATCHES = Path(__file__).resolve().parents[3] / "patches"

EVENTS = ("KIST_RUN", "KIST_OVERHEAD", "KIST_QTIME", "KIST_KQTIME")
NEW_TESTS = ("scheduler/kist_run_event", "scheduler/kist_overhead_event", "scheduler/kist_qtime_event",
             "scheduler/vanilla_run_event",
             "circuitmux/trace_describe",
             "control/event/kist_event_names", "control/event/kist_event_format",
             "connection/kqtime_take_stamp", "connection/kqtime_parse", "connection/kqtime_loopback")


@pytest.fixture(scope="session")
def patched() -> build.BuildResult:
    return build.ensure_built("debian", PATCHES)


def test_build_runs_tor_suites_and_new_tests_then_hits_cache(patched: build.BuildResult) -> None:
    assert patched.tor.is_absolute() and os.access(patched.tor, os.X_OK)
    assert os.access(patched.tor_gencert, os.X_OK)
    out = subprocess.run([str(patched.tor), "--version"], capture_output=True, text=True, check=True).stdout
    assert f"Tor version {patched.version}" in out
    ran = {s.pattern: s for s in patched.suites}
    assert set(build.TOR_SUITES) | set(NEW_TESTS) <= set(ran)
    assert all(s.passed >= 1 for s in ran.values())
    assert patched.series_hash == build.load_series(PATCHES).digest

    again = build.ensure_built("debian", PATCHES)
    assert again.cached and again.tor == patched.tor and again.cache_key == patched.cache_key


def test_cli_prints_tor_path_last(patched: build.BuildResult) -> None:
    res = subprocess.run([sys.executable, "-m", "harness.cli", "build"], capture_output=True, text=True,
                         check=True, timeout=60, cwd=PATCHES.parent)
    assert res.stdout.splitlines()[-1] == str(patched.tor)
    assert "cached build" in res.stderr


@contextmanager
def _tor(binary: Path, tmp: Path) -> Iterator[int]:
    """A tor with no network and a control port on loopback; yields the port, kills it by pid."""
    data = tmp / "data"
    data.mkdir(mode=0o700)
    port_file = tmp / "control.port"
    torrc = tmp / "torrc"
    torrc.write_text("")  # nothing from /etc/tor: the command line says it all
    proc = subprocess.Popen(
        [str(binary), "-f", str(torrc), "--defaults-torrc", str(torrc), "--DataDirectory", str(data),
         "--DisableNetwork", "1",
         "--SocksPort", "0", "--ControlPort", "auto", "--ControlPortWriteToFile", str(port_file),
         "--CookieAuthentication", "1", "--Log", f"notice file {tmp / 'tor.log'}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not port_file.is_file() and time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"tor exited: {(tmp / 'tor.log').read_text()[-2000:]}")
            time.sleep(0.1)
        assert port_file.is_file(), (tmp / "tor.log").read_text()[-2000:]
        yield int(port_file.read_text().split(":")[-1])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_patched_tor_offers_the_events_and_stock_tor_does_not(patched: build.BuildResult,
                                                              tmp_path: Path) -> None:
    from stem import ProtocolError
    from stem.control import Controller

    (tmp_path / "p").mkdir()
    with _tor(patched.tor, tmp_path / "p") as port, Controller.from_port(port=port) as c:
        c.authenticate()
        names = c.get_info("events/names").split()
        assert set(EVENTS) <= set(names)
        assert str(c.msg("SETEVENTS " + " ".join(EVENTS))) == "OK"

    (tmp_path / "s").mkdir()
    with _tor(Path("/usr/bin/tor"), tmp_path / "s") as port, Controller.from_port(port=port) as c:
        c.authenticate()
        assert "KIST_RUN" not in c.get_info("events/names").split()
        reply = c.msg("SETEVENTS KIST_RUN")
        assert not reply.is_ok() and 'Unrecognized event "KIST_RUN"' in str(reply)

        def listener(event: object) -> None:
            pass

        with pytest.raises(ProtocolError, match="KIST_RUN"):
            c.add_event_listener(listener, "KIST_RUN")
        c.remove_event_listener(listener)  # stem keeps a rejected listener registered


BROKEN = """\
From 0123456789abcdef0123456789abcdef01234567 Mon Sep 17 00:00:00 2001
From: Someone <someone@example.org>
Subject: [PATCH] Touch the scheduler

Forwarded: no
Last-Update: 2026-11-24
---
diff --git a/src/core/or/scheduler.c b/src/core/or/scheduler.c
--- a/src/core/or/scheduler.c
+++ b/src/core/or/scheduler.c
@@ -1,3 +1,3 @@
 line one
-line two that is not there
+line two
 line three
"""


def test_patch_that_does_not_apply_names_patch_file_hunk_and_leaves_cache(tmp_path: Path) -> None:
    tree = tmp_path / "tor-0.0.0"
    (tree / "src/core/or").mkdir(parents=True)
    (tree / "src/core/or/scheduler.c").write_text("line one\nline 2\nline three\n")
    (tree / "configure").write_text("#!/bin/sh\n")
    tarball = tmp_path / "tor-0.0.0.tar.gz"
    with tarfile.open(tarball, "w:gz") as tf:
        tf.add(tree, arcname="tor-0.0.0")
    patches = tmp_path / "patches"
    patches.mkdir()
    (patches / "0001-touch.patch").write_text(BROKEN)
    (patches / "series").write_text("0001-touch.patch\n")
    cache = tmp_path / "cache"

    with pytest.raises(build.PatchDoesNotApply) as info:
        build.ensure_built(str(tarball), patches, cache_dir=cache)
    msg = str(info.value)
    assert "0001-touch.patch" in msg and "src/core/or/scheduler.c hunk #1" in msg
    assert [p.name for p in (cache / "builds").iterdir()] == [".lock"]  # no entry, no temp dir


def test_failed_step_shows_command_exit_code_and_log_tail(tmp_path: Path) -> None:
    tree = tmp_path / "tor-0.0.1"
    tree.mkdir()
    (tree / "configure").write_text("#!/bin/sh\necho checking for a compiler... none >&2\nexit 77\n")
    os.chmod(tree / "configure", 0o755)
    tarball = tmp_path / "tor-0.0.1.tar.gz"
    with tarfile.open(tarball, "w:gz") as tf:
        tf.add(tree, arcname="tor-0.0.1")
    cache = tmp_path / "cache"
    with pytest.raises(CommandFailed) as info:
        build.ensure_built(str(tarball), None, cache_dir=cache)
    msg = str(info.value)
    assert "exit code 77" in msg and "./configure" in msg and "checking for a compiler... none" in msg
    assert [p.name for p in (cache / "builds").iterdir()] == [".lock"]
    assert any(p.name.endswith("-configure.log") for p in (cache / "logs").iterdir())
