"""Bring your own scheduler, end to end on real tor: docs/examples/kist-sndbuf-limit.

One main job (`kist-harness run --patches DIR --policy MODULE:CLASS`) on the default
network's local processes (the KIST relay's socket buffers fixed at 8 KiB, so that both
terms of the formula bind): the KIST relay runs the project's series plus the example's C
patch (KIST limited by min(send-buffer space, congestion-window space)), and every recorded
KIST decision is replayed through the example's KistPolicy subclass: 0 divergences. The
same store re-judged by `kist-harness report --policy faithful` (Tor's own formula in the
model, the variant's in the C) must diverge, and say where: the first divergent run, the
decision, both choices. `kist-harness report` without --policy re-judges with the policy
the store records.

Cost: the first run builds the series + the example patch, a full Tor build and its unit
tests (about 5 min of both cores, cached after); then about 2 minutes (bring-up, 30 s of
traffic, replay, teardown).
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from harness.config import scenario_path
from harness.run.job import RunConfig, RunOutcome, run
from kist_reference import trace
from kist_reference.trace import TcpInfo

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "kist-sndbuf-limit"
SPEC = f"{EXAMPLE / 'policy.py'}:SndbufLimitKist"


@pytest.fixture(scope="module")
def byo(tmp_path_factory: pytest.TempPathFactory) -> RunOutcome:
    base = tmp_path_factory.mktemp("byo")
    scenario = base / "default-no-variants.toml"
    # the default network without its load/loss variants (one phase is enough to judge the formula),
    # its KIST relay's socket buffers fixed at 8 KiB: on loopback autotuning takes them to megabytes
    # and the send-buffer term of the formula would never be the smaller
    default = scenario_path("default").read_text().split("\n[[variants]]", 1)[0]
    assert default.count("kist_sock_buf_size_factor = 1.0\n") == 1
    scenario.write_text(default.replace("kist_sock_buf_size_factor = 1.0\n",
                                        "kist_sock_buf_size_factor = 1.0\nconstrained_sock_kib = 8\n") + "\n")
    return run(RunConfig(scenario=str(scenario), backend="local", out=base / "out", duration_s=30, period_s=10,
                         seed=4, patches=EXAMPLE, policy=SPEC))


def _kist_records(store: Path) -> list[trace.RunRecord]:
    db = sqlite3.connect(store)
    rows = db.execute("SELECT raw FROM records WHERE kind = 'KIST_RUN' AND raw IS NOT NULL").fetchall()
    return [r for r in (trace.parse_wire(raw) for (raw,) in rows) if r.sched == "KIST"]


def _report(store: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", "report", str(store), "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)


def test_the_patched_c_and_the_subclassed_policy_agree(byo: RunOutcome) -> None:
    assert byo.divergences == 0, (byo.out / "divergences")
    assert byo.runs > 50 and byo.decisions > 1000
    recs = _kist_records(byo.store)
    reads = [s for r in recs for s in r.sock if isinstance(s, TcpInfo)]
    assert reads and all(len(s.extra) == 2 for s in reads), "the KIST relay did not run the example patch"
    sndbuf_bound = sum(s.extra[0] - s.extra[1] < max(s.cwnd - s.unacked, 0) * s.mss for s in reads)
    assert sndbuf_bound > 0, "the send-buffer term never bound: the min() was not exercised"
    print(f"\nbyo: {byo.runs} runs, {byo.decisions} decisions, 0 divergences; {len(recs)} KIST runs, "
          f"{len(reads)} socket reads, the send-buffer term bound in {sndbuf_bound}; timings {byo.split}")


def test_the_store_and_the_report_say_which_patches_and_policy_judged(byo: RunOutcome) -> None:
    db = sqlite3.connect(byo.store)
    (data,) = db.execute("SELECT data FROM records WHERE kind = 'judge'").fetchone()
    assert SPEC in data and "kist-sndbuf-limit/0001-" in data
    md = (byo.out / "report" / "summary.md").read_text()
    assert f"divergences from --policy {SPEC}: 0." in md
    assert re.search(r"^- policy: .*SndbufLimitKist, judges the KIST runs", md, re.M), md
    assert re.search(r"^- extra patches: kist-sndbuf-limit/0001-", md, re.M)


def test_the_faithful_model_on_the_variant_diverges_and_says_where(byo: RunOutcome, tmp_path: Path) -> None:
    res = _report(byo.store, tmp_path / "faithful", "--policy", "faithful")
    assert res.returncode == 1, res.stderr
    m = re.search(r"runs=(\d+) decisions=(\d+) divergences=(\d+)", res.stdout)
    assert m and int(m.group(3)) > 0, res.stdout
    print(f"\nfaithful model on the variant: {m.group(0)}")
    md = (tmp_path / "faithful" / "summary.md").read_text()
    assert "divergences from the faithful model: " in md
    first = re.search(r"^- Run (\d+) on (\S+), decision (\d+): Tor (limit of channel \d+ = \d+), "
                      r"model (\d+ from TcpInfo\(.*?\)) .*Reproducer: (\S+)$", md, re.M)
    assert first, md
    print(f"first divergence: run {first.group(1)} on {first.group(2)}, decision {first.group(3)}: "
          f"tor {first.group(4)}, model {first.group(5)[:80]}")
    assert Path(first.group(6)).is_file()


def test_report_rejudges_with_the_policy_the_store_records(byo: RunOutcome, tmp_path: Path) -> None:
    res = _report(byo.store, tmp_path / "again")
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"runs={byo.runs} decisions={byo.decisions} divergences=0" in res.stdout
