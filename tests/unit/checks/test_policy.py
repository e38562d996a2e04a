"""`--policy module:Class`: loading, every way it can be wrong, and judging runs with it.

The shipped example (docs/examples/kist-sndbuf-limit/policy.py) judges records of a
simulated relay that runs the same formula (kist_reference.recorder with the example's
policy and the two values its patch adds to each socket read): 0 divergences; the faithful
model on the same records diverges at the first limit; the example on records without the
values (a tor without the patch) stops with a divergence that says why.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.checks import policy
from harness.checks.differential import Recorded, check
from harness.errors import InputError
from kist_reference import trace
from kist_reference.recorder import SimRelay
from kist_reference.scheduler import KistPolicy
from kist_reference.trace import SockRead, TcpInfo

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "docs" / "examples" / "kist-sndbuf-limit"
SPEC = f"{EXAMPLE / 'policy.py'}:SndbufLimitKist"


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_example_loads_from_its_path_and_judges_the_kist_runs() -> None:
    spec = policy.load(SPEC)
    assert spec.judges == "KIST" and spec.cls.__name__ == "SndbufLimitKist"
    assert issubclass(spec.cls, KistPolicy)
    assert spec.source == str(EXAMPLE / "policy.py") and len(spec.sha256) == 64
    assert set(spec.policies()) == {"KIST"}
    assert "judges the KIST runs" in spec.describe()


def test_a_dotted_module_on_sys_path_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, "my_lite_policy.py", "from kist_reference.scheduler import KistLitePolicy\n"
                                          "class Mine(KistLitePolicy):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = policy.load("my_lite_policy:Mine")
    assert spec.judges == "KISTLite"  # the most derived of the three decides which runs


@pytest.mark.parametrize(("text", "spec", "expected"), [
    (None, "nocolon", "not of the form module:Class"),
    (None, "mod:", "not of the form module:Class"),
    (None, "no_such_module_kh:Cls", "module no_such_module_kh cannot be imported"),
    (None, "/nonexistent/dir/p.py:Cls", "is not a file"),
    ("def f(:\n", "{path}:Cls", "syntax error"),
    ("import os\nraise RuntimeError('boom at import')\n", "{path}:Cls", "importing"),
    ("X = 1\n", "{path}:Cls", "has no Cls (it defines no Policy subclass)"),
    ("from kist_reference.scheduler import KistPolicy\nclass A(KistPolicy): pass\n", "{path}:B",
     "the Policy subclasses it defines: A"),
    ("Cls = 3\n", "{path}:Cls", "is a int, not a subclass of kist_reference.scheduler.KistPolicy"),
    ("class Cls(dict): pass\n", "{path}:Cls", "is a class deriving from dict, not a subclass"),
    ("from kist_reference.scheduler import Policy\nclass Cls(Policy): pass\n", "{path}:Cls",
     "from none of KistPolicy, KistLitePolicy, VanillaPolicy"),
    ("from kist_reference.scheduler import KistPolicy as Cls\n", "{path}:Cls", "the faithful KIST policy itself"),
    ("from kist_reference.scheduler import KistPolicy\nclass Cls(KistPolicy):\n"
     "    def __init__(self, limit):\n        self.limit = limit\n", "{path}:Cls",
     "Cls() failed: TypeError"),
])
def test_a_bad_policy_is_one_paragraph_naming_the_flag(tmp_path: Path, text: str | None, spec: str,
                                                       expected: str) -> None:
    path = _write(tmp_path, "bad_policy.py", text) if text is not None else tmp_path / "unused.py"
    given = spec.format(path=path)
    with pytest.raises(InputError) as err:
        policy.load(given)
    msg = str(err.value)
    assert msg.startswith(f"--policy {given!r}: ") and expected in msg, msg
    assert "\n" not in msg and "Traceback" not in msg


def test_an_import_error_names_the_line_that_raised(tmp_path: Path) -> None:
    path = _write(tmp_path, "raises.py", "A = 1\nB = 2\nraise ValueError('no')\n")
    with pytest.raises(InputError, match=rf"at {path}:3: ValueError: no"):
        policy.load(f"{path}:Cls")


def test_run_refuses_a_bad_policy_before_building_or_writing(tmp_path: Path) -> None:
    """Through the CLI: exit code and one paragraph, no traceback, no --out created."""
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, "-m", "harness.cli", "run", "basic", "--out", str(out),
                          "--policy", "no_such_module_kh:Cls"], capture_output=True, text=True, timeout=60,
                         cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert res.returncode != 0
    assert "--policy 'no_such_module_kh:Cls': module no_such_module_kh cannot be imported" in res.stderr
    assert "Traceback" not in res.stderr
    assert not out.exists()


def test_run_refuses_patches_with_a_given_tor(tmp_path: Path) -> None:
    from harness.run.job import RunConfig, bring_your_own

    with pytest.raises(InputError, match="--patches .* and --tor .*: a given tor is run as it is"):
        bring_your_own(RunConfig(patches=EXAMPLE, tor=tmp_path / "tor"))
    with pytest.raises(InputError, match="--patches .*/nowhere: no such directory"):
        bring_your_own(RunConfig(patches=tmp_path / "nowhere"))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "series").write_text("0001-x.patch\n")
    (bad / "0001-x.patch").write_text("Subject: [PATCH] x\n\n---\ndiff --git a/x b/x\n")
    with pytest.raises(InputError, match=r"0001-x.patch: DEP-3 header field\(s\) Author, Forwarded, Last-Update"):
        bring_your_own(RunConfig(patches=bad))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="--patches .*: no patches"):
        bring_your_own(RunConfig(patches=empty))
    judge, extra = bring_your_own(RunConfig(patches=EXAMPLE, policy=SPEC))
    assert judge is not None and extra is not None and len(extra.patches) == 1


# --------------------------------------------------------------------------- judging runs


class _SndbufRelay(SimRelay):
    """The simulated relay, its sockets read as the example patch reads them (two more values)."""

    def sock_read(self, chan: object) -> SockRead:
        read = super().sock_read(chan)  # type: ignore[arg-type]
        if isinstance(read, TcpInfo):
            sndbuf = self.rng.choice((4608, 16384, 87040))
            outq = self.rng.randint(0, 20000)
            return TcpInfo(read.cwnd, read.unacked, read.mss, read.notsent, (sndbuf, outq))
        return read


def _records(relay: SimRelay, n: int) -> list[Recorded]:
    return [Recorded("relayS", "KIST", trace.to_wire(rec)) for rec in relay.records(n)]


def test_the_example_agrees_with_a_relay_running_its_formula(tmp_path: Path) -> None:
    judge = policy.load(SPEC)
    recorded = _records(_SndbufRelay(seed=5, policy=judge.cls()), 150)
    assert all("/" in r.payload.split(" SOCK=", 1)[1].split(",", 1)[0][2:] for r in recorded[:3])
    summary = check(recorded, tmp_path, policies=judge.policies(), judged_by=f"--policy {judge.spec}")
    assert summary.runs == len(recorded) >= 100 and summary.decisions > 1000
    assert summary.divergences == () and summary.judged_by == f"--policy {SPEC}"
    # which term bound: both, or the example would not test the min()
    binding = {"sndbuf": 0, "cwnd": 0}
    for r in recorded:
        rec = trace.parse_wire(r.payload)
        for read in rec.sock:
            if isinstance(read, TcpInfo):
                cwnd_space = max(read.cwnd - read.unacked, 0) * read.mss
                binding["sndbuf" if read.extra[0] - read.extra[1] < cwnd_space else "cwnd"] += 1
    assert binding["sndbuf"] > 0 and binding["cwnd"] > 0, binding


def test_the_faithful_model_diverges_at_the_first_limit(tmp_path: Path) -> None:
    judge = policy.load(SPEC)
    summary = check(_records(_SndbufRelay(seed=5, policy=judge.cls()), 20), tmp_path)
    assert summary.divergences
    first = summary.divergences[0]
    assert first.index == 0 and first.explanation.startswith("limit at end of run")
    assert first.actual.startswith("limit of channel ") and " from TcpInfo(" in first.expected
    assert Path(first.reproducer).is_file()


def test_the_example_on_records_without_its_values_says_what_is_missing(tmp_path: Path) -> None:
    judge = policy.load(SPEC)
    summary = check(_records(SimRelay(seed=2), 5), tmp_path, policies=judge.policies())
    assert len(summary.divergences) == 5
    assert "was this tor built with the kist-sndbuf-limit patch?" in summary.divergences[0].expected


def test_the_store_keeps_a_relative_path_made_absolute(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    spec = policy.load("docs/examples/kist-sndbuf-limit/policy.py:SndbufLimitKist")
    rec = spec.record(0.0, ("kist-sndbuf-limit/0001-x.patch",))
    assert rec.data["spec"] == SPEC and rec.data["judges"] == "KIST"
    assert rec.data["extra_patches"] == ["kist-sndbuf-limit/0001-x.patch"]


def test_report_rejudges_a_store_with_the_policy_it_records(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main
    from harness.store.db import Store
    from harness.store.records import KIST_RUN, Context, Record

    judge = policy.load(SPEC)
    store_path = tmp_path / "run" / "store.sqlite"
    store_path.parent.mkdir()
    ctx = Context("byo-unit", fingerprint="relayS", arm="KIST")
    with Store(store_path) as store:
        store.write_batch([(Context("byo-unit", fingerprint="harness"), judge.record(1.0, ("kist-sndbuf-limit/x",)))])
        store.write_batch([(ctx, Record(KIST_RUN, 2.0 + i, {"sched": "KIST"}, r.payload))
                           for i, r in enumerate(_records(_SndbufRelay(seed=9, policy=judge.cls()), 30))])
    assert main(["report", str(store_path), "--out", str(tmp_path / "again")]) == 0
    said = capsys.readouterr().out
    assert re.search(r"runs=\d+ decisions=\d+ divergences=0", said), said
    md = (tmp_path / "again" / "summary.md").read_text()
    assert f"divergences from --policy {SPEC}: 0." in md and "- extra patches: kist-sndbuf-limit/x" in md

    assert main(["report", str(store_path), "--out", str(tmp_path / "faithful"), "--policy", "faithful"]) == 1
    said = capsys.readouterr().out
    assert "re-judging with the faithful model" in said
    md = (tmp_path / "faithful" / "summary.md").read_text()
    assert re.search(r"^- Run \d+ on relayS, decision 0: Tor limit of channel \d+ = \d+, model \d+ from TcpInfo",
                     md, re.M), md
