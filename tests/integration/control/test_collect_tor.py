"""The collector against real stock tor processes: standard events, auth, faults."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from control_tor import TorProcess

from harness.control.abtest import Schedule, parse_arms
from harness.control.auth import Credentials
from harness.control.collector import CollectConfig, Collector
from harness.control.events import CUSTOM_EVENTS
from harness.control.transport import TcpTransport, UnixTransport
from harness.errors import StepError
from harness.store.db import open_store
from harness.store.records import Kind

pytestmark = pytest.mark.integration


def _collect(transport, creds, store_path: Path, duration: float, **kw) -> Collector:
    schedule = kw.pop("schedule", None)
    config = CollectConfig(run_id="t", duration_s=duration, snapshot_every_s=1.0,
                           flush_every_s=0.2, backoff_first_s=0.2, backoff_max_s=1.0, **kw)
    with open_store(store_path) as store:
        collector = Collector(transport, creds, store, config, schedule=schedule)
        collector.run()
    return collector


def _records(store_path: Path, kind: str) -> list:
    with open_store(store_path, readonly=True) as store:
        return list(store.records(kind))


def _get_conf(tor: TorProcess, option: str) -> str:
    import stem.control

    with stem.control.Controller.from_port(port=tor.control_port) as c:
        c.authenticate()
        return c.get_conf(option)


def test_stock_tor_standard_events_and_what_is_unavailable(tor: TorProcess, tmp_path: Path) -> None:
    store = tmp_path / "s.db"
    c = _collect(TcpTransport("127.0.0.1", tor.control_port), Credentials(tor.cookie), store, 3.5)
    bw = _records(store, "BW")
    assert len(bw) >= 2
    ctx, rec = bw[0]
    assert ctx.tor_version.startswith("0.4.9") and len(ctx.fingerprint) == 40
    assert ctx.patch_hash == "none" and ctx.run_id == "t"
    assert isinstance(rec.data["read"], int) and isinstance(rec.data["written"], int)
    (_, features), = _records(store, Kind.FEATURES)
    assert set(features.data["subscribed"]) >= {"BW", "ORCONN", "CIRC", "CIRC_BW"}
    assert "KIST_RUN" in features.data["unavailable"]
    assert "TestingEnableConnBwEvent" in features.data["unavailable"]["CONN_BW"]
    assert "KIST_RUN" in c.progress.unavailable
    snaps = _records(store, Kind.SNAPSHOT)
    assert len(snaps) >= 2
    assert snaps[0][1].data["conf"]["Schedulers"] == "KIST,KISTLite,Vanilla"
    assert snaps[-1][1].data["uptime"] >= snaps[0][1].data["uptime"]
    assert len(_records(store, Kind.END)) == 1


def test_unix_control_socket(tor_workdir: Path, tmp_path: Path) -> None:
    t = TorProcess(tor_workdir, control_socket=True).start()
    try:
        store = tmp_path / "s.db"
        _collect(UnixTransport(t.socket_path), Credentials(), store, 2.5)
        assert len(_records(store, "BW")) >= 1
    finally:
        t.stop()


def test_password_auth_and_refusal_without_leaking(tor_workdir: Path, tmp_path: Path) -> None:
    secret = "s3cret-horse-battery"
    hashed = subprocess.run(["/usr/bin/tor", "--quiet", "--hash-password", secret],
                            capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    t = TorProcess(tor_workdir, hashed_password=hashed).start()
    try:
        good, bad = tmp_path / "pw", tmp_path / "bad"
        good.write_text(secret + "\n")
        bad.write_text("wrong-" + secret)
        store = tmp_path / "s.db"
        transport = TcpTransport("127.0.0.1", t.control_port)
        _collect(transport, Credentials.from_args(None, good), store, 1.5)
        assert len(_records(store, Kind.FEATURES)) == 1
        with pytest.raises(StepError) as err:
            _collect(transport, Credentials.from_args(None, bad), tmp_path / "s2.db", 1.0)
        assert secret not in str(err.value) and "password" in str(err.value)
        assert secret not in repr(Credentials.from_args(None, good))
        with open_store(store, readonly=True) as s:
            assert all(secret not in json.dumps(r.data) for _c, r in s.records())
    finally:
        t.stop()


def test_tor_killed_and_restarted_mid_collection(tor: TorProcess, tmp_path: Path) -> None:
    store = tmp_path / "s.db"
    result: dict = {}

    schedule = Schedule(parse_arms("Vanilla,KISTLite"), 600, seed=1)  # one arm throughout

    def run() -> None:
        result["c"] = _collect(TcpTransport("127.0.0.1", tor.control_port), Credentials(tor.cookie),
                               store, 11.0, schedule=schedule)

    th = threading.Thread(target=run)
    th.start()
    time.sleep(3.5)
    killed_at = time.time()
    tor.kill()
    time.sleep(2.5)
    tor.start()
    restarted_at = time.time()
    th.join(30)
    assert not th.is_alive()
    bw_ts = [r.ts for _c, r in _records(store, "BW")]
    assert sum(ts < killed_at for ts in bw_ts) >= 2, "records before the kill kept"
    assert sum(ts > restarted_at for ts in bw_ts) >= 2, "records after the restart stored"
    (gctx, gap), = _records(store, Kind.GAP)
    assert gap.data["seconds"] >= 2.0 and not gap.data.get("open")
    assert gap.data["start"] <= restarted_at <= gap.data["end"] + 0.5
    assert len(_records(store, Kind.FEATURES)) == 2
    assert result["c"].progress.gaps == 1
    # the restarted tor came back with its torrc's Schedulers: the arm was re-applied
    arm = schedule.slot_at(0).arm.name
    after = [r for c, r in _records(store, Kind.SNAPSHOT) if r.ts > restarted_at]
    assert after and all(r.data["conf"]["Schedulers"] == arm for r in after)
    assert _get_conf(tor, "Schedulers") == "KIST,KISTLite,Vanilla", "restored at the end"


def test_ab_switches_and_restores(tor: TorProcess, tmp_path: Path) -> None:
    store = tmp_path / "s.db"
    schedule = Schedule(parse_arms("KIST,Vanilla"), 1.5, seed=7)
    _collect(TcpTransport("127.0.0.1", tor.control_port), Credentials(tor.cookie), store, 6.5,
             schedule=schedule)
    assert _get_conf(tor, "Schedulers") == "KIST,KISTLite,Vanilla"
    arms = [r.data for _c, r in _records(store, Kind.ARM)]
    switched = [a["arm"] for a in arms if "arm" in a]
    expected = [schedule.slot_at(i * 1.5).arm.name for i in range(len(switched))]
    assert switched == expected and {"KIST", "Vanilla"} <= set(switched)
    assert arms[-1] == {"restored": {"Schedulers": "KIST,KISTLite,Vanilla"}}
    # each snapshot shows the arm the store says was on
    for ctx, snap in _records(store, Kind.SNAPSHOT):
        if ctx.arm != "-":
            assert snap.data["conf"]["Schedulers"] == ctx.arm
    with open_store(store, readonly=True) as s:
        from harness.checks.arms import summarize

        stats, comparisons = summarize(s, "t", settle_s=0.0)
    assert {a.arm for a in stats if a.metric == "goodput"} == {"KIST", "Vanilla"}
    assert comparisons and comparisons[0].metric == "goodput"


def _cli(tor: TorProcess, store: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "collect", "--control", f"127.0.0.1:{tor.control_port}",
         "--cookie", str(tor.cookie), "--out", str(store), "--run-id", "cli", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(store: Path, kind: str, n: int, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        try:
            with open_store(store, readonly=True) as s:
                count = s.count(kind)
        except Exception:  # noqa: BLE001 - the store may not exist yet
            count = 0
        if count >= n:
            return count
        time.sleep(0.2)
    raise AssertionError(f"only {count} {kind} records after {timeout} s")


def test_collector_sigkill_leaves_committed_batches(tor: TorProcess, tmp_path: Path) -> None:
    store = tmp_path / "s.db"
    proc = _cli(tor, store, "--duration", "60s", "--snapshot-every", "1s")
    try:
        seen = _wait_for(store, "BW", 3)
        time.sleep(1.0)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    db = sqlite3.connect(store)  # WAL recovery happens on this open
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    with open_store(store, readonly=True) as s:
        assert s.count("BW") >= seen
        assert s.count(Kind.END) == 0, "SIGKILL: no clean end record"
        assert s.count(Kind.SESSION) == 1


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signal_flushes_restores_and_summarises(tor: TorProcess, tmp_path: Path, sig: int) -> None:
    store = tmp_path / "s.db"
    proc = _cli(tor, store, "--duration", "60s", "--ab", "Vanilla,KISTLite", "--period", "1s",
                "--seed", "3")
    try:
        _wait_for(store, "BW", 5)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + sig, err  # flushed and closed, then exit as a stopped process
    assert f"stopped by {signal.Signals(sig).name}" in err
    # the A/B part of the summary is printed either way; a loaded machine may not finish a period first
    assert ("A/B summary" in out or "A/B: no complete period" in out) and "records stored" in out
    assert "seed 3" in err
    assert _get_conf(tor, "Schedulers") == "KIST,KISTLite,Vanilla"
    with open_store(store, readonly=True) as s:
        (_c, end), = s.records(Kind.END)
        assert end.data["events"] >= 3


def test_stock_tor_rejects_the_patch_events_and_the_listener_is_dropped(tor: TorProcess) -> None:
    import stem.control

    from harness.control.session import subscribe

    with stem.control.Controller.from_port(port=tor.control_port) as c:
        c.authenticate()
        accepted, rejected = subscribe(c, ["BW", "KIST_RUN", "CIRC"])
        assert accepted == ["BW", "CIRC"] and "rejected KIST_RUN" in rejected["KIST_RUN"]
        assert "KIST_RUN" not in c._event_listeners
        # later subscriptions work: the rejected name is not resent with them
        assert subscribe(c, ["ORCONN"]) == (["ORCONN"], {})


def test_stopped_tor_is_a_stall_gap_not_a_hang(tor: TorProcess, tmp_path: Path) -> None:
    """SIGSTOP keeps the connection open but silent: a GETINFO would wait for ever."""
    store = tmp_path / "s.db"
    th = threading.Thread(target=_collect, args=(TcpTransport("127.0.0.1", tor.control_port),
                                                 Credentials(tor.cookie), store, 15.0),
                          kwargs={"stall_s": 2.0})
    th.start()
    time.sleep(3.0)
    assert tor.proc is not None
    os.kill(tor.proc.pid, signal.SIGSTOP)
    time.sleep(8.0)  # long enough for reconnects to reach the stopped tor and be cut off too
    os.kill(tor.proc.pid, signal.SIGCONT)
    resumed = time.time()
    th.join(30)
    assert not th.is_alive()
    (_c, gap), = _records(store, Kind.GAP)
    assert "no event for" in gap.data["reason"] and not gap.data.get("open")
    assert any(r.ts > resumed for _c, r in _records(store, "BW")), "collection resumed"


def test_testing_network_tor_offers_conn_bw_and_cell_stats(tor_workdir: Path, tmp_path: Path) -> None:
    t = TorProcess(tor_workdir, testing=True).start()
    try:
        store = tmp_path / "s.db"
        c = _collect(TcpTransport("127.0.0.1", t.control_port), Credentials(t.cookie), store, 1.5)
        (_c, features), = _records(store, Kind.FEATURES)
        assert {"CONN_BW", "CELL_STATS", "CIRC_BW"} <= set(features.data["subscribed"])
        assert set(c.progress.unavailable) == set(CUSTOM_EVENTS), "only the patch's are missing"
    finally:
        t.stop()
