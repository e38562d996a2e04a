"""The main job on a real private network: every KIST decision of the patched relays is
replayed through kist_reference, and the report's numbers are checked against the store,
per load/loss variant (a load variant runs on every backend; a loss variant needs Docker
and is skipped, visibly, on the local backend).

Builds the patched Tor (cached by `kist-harness build`), so the first run on a fresh
machine takes the build's time too.
"""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path

import pytest

from harness.config import scenario_path
from harness.run.job import RunConfig, RunOutcome, run

pytestmark = pytest.mark.differential

BACKEND = os.environ.get("KIST_HARNESS_DIFF_BACKEND", "local")
VARIANTS = """
[[variants]]
name = "load2"
load_scale = 2.0
duration_s = 20

[[variants]]
name = "loss1"
loss_percent = 1.0
duration_s = 20
"""


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> RunOutcome:
    base = tmp_path_factory.mktemp("run")
    scenario = base / "default-variants.toml"
    default = scenario_path("default").read_text()
    # the default network with this test's variants (short phases) in place of its own (kept last in the file)
    scenario.write_text(default.split("\n[[variants]]", 1)[0] + "\n" + VARIANTS)
    return run(RunConfig(scenario=str(scenario), backend=BACKEND, out=base / "out", duration_s=40, period_s=10,
                         seed=3))


def test_every_recorded_decision_matches_the_faithful_model(live: RunOutcome) -> None:
    assert live.divergences == 0
    assert live.runs > 100 and live.decisions >= 10_000
    assert not (live.out / "divergences").exists()


def test_the_replay_measures_which_model_branches_the_runs_took(live: RunOutcome) -> None:
    m = re.fullmatch(r"model_branches=(\d+\.\d)% \((\d+)/(\d+)\) (reachable=\S+ \(\d+/\d+\)) "
                     r"cumulative=\1% \(\2/\3\) \4", live.coverage)
    assert m, live.coverage
    assert float(m.group(1)) >= 45.0  # a main job takes about half; far less: replay stopped tracing
    assert (live.out / "model-coverage.sqlite").is_file()
    md = (live.out / "report" / "summary.md").read_text()
    assert "## Model branch coverage" in md and "| all | " in md


def test_tor_queue_times_agree_with_the_decision_timeline(live: RunOutcome) -> None:
    """KIST_QTIME per cell against the run's own flushes and writes; KIST_KQTIME sampled."""
    assert live.queue_mismatches == 0
    assert live.queue_cells >= 1000
    db = sqlite3.connect(live.store)
    kq = db.execute("SELECT count(*), sum(json_extract(data, '$.snd_ns') IS NOT NULL) FROM records "
                    "WHERE kind = 'KIST_KQTIME'").fetchone()
    assert kq[0] > 0 and kq[1] == kq[0], "no kernel queue time samples, or samples without SNDNS"
    md = (live.out / "report" / "summary.md").read_text()
    assert "Kernel queue time" in md and "Tor queue time" in md


def test_traffic_ran_in_both_arms(live: RunOutcome) -> None:
    db = sqlite3.connect(live.store)
    arms = dict(db.execute("SELECT c.arm, count(*) FROM records r JOIN contexts c ON r.ctx = c.id "
                           "WHERE r.kind = 'download' GROUP BY c.arm"))
    assert live.downloads == sum(arms.values()) > 0
    assert arms.get("KIST", 0) > 0 and arms.get("Vanilla", 0) > 0
    kinds = dict(db.execute("SELECT kind, count(*) FROM records GROUP BY kind"))
    assert kinds.get("KIST_RUN", 0) == live.runs and kinds.get("KIST_OVERHEAD", 0) > 0


def test_report_numbers_come_from_the_store(live: RunOutcome) -> None:
    db = sqlite3.connect(live.store)
    expected = dict(db.execute(
        "SELECT c.arm, count(*) FROM records r JOIN contexts c ON r.ctx = c.id WHERE r.kind = 'download' "
        "AND json_extract(r.data, '$.size') = 327680 AND json_extract(r.data, '$.outcome') = 'ok' "
        "AND c.arm IN ('KIST', 'Vanilla') AND c.run_id = (SELECT min(run_id) FROM contexts) GROUP BY c.arm"))
    md = (live.out / "report" / "summary.md").read_text()
    section = md.split("## Time to last byte, 320 KiB", 1)[1].split("\n## ", 1)[0]
    shown = {m.group(1): int(m.group(2)) for m in re.finditer(r"^\| (KIST|Vanilla) \| (\d+) \|", section, re.M)}
    assert shown == expected
    assert f"decisions checked: {live.decisions:,}; divergences from the faithful model: 0." in md
    for png in ("ttlb_327680.png", "goodput.png", "pending.png", "overhead.png"):
        assert (live.out / "report" / png).read_bytes()[:4] == b"\x89PNG"


def test_each_variant_is_its_own_phase_and_the_report_splits_by_it(live: RunOutcome) -> None:
    db = sqlite3.connect(live.store)
    variant_of = dict(db.execute("SELECT run_id, json_extract(data, '$.variant') FROM records_full "
                                 "WHERE kind = 'variant'"))
    assert sorted(set(variant_of.values())) == ["base", "load2", "loss1"]
    counts: dict[tuple[str, str], list[int]] = {}
    for run_id, arm, ok in db.execute("SELECT run_id, arm, json_extract(data, '$.outcome') = 'ok' FROM records_full "
                                      "WHERE kind = 'download' AND arm IN ('KIST', 'Vanilla')"):
        counts.setdefault((variant_of[run_id], arm), [0, 0])[0 if ok else 1] += 1
    assert counts.get(("load2", "KIST"), [0])[0] > 0 and counts.get(("load2", "Vanilla"), [0])[0] > 0
    md = (live.out / "report" / "summary.md").read_text()
    table = md.split("## KIST vs Vanilla per variant", 1)[1].split("\n## ", 1)[0]
    shown = {(m.group(1), m.group(2)): [int(m.group(3)), int(m.group(4))]
             for m in re.finditer(r"^\| (\w+) \| (KIST|Vanilla) \| (\d+) \| (\d+) \|", table, re.M)}
    assert {k: v for k, v in shown.items() if sum(v)} == counts  # rows with no download: goodput/queue only
    loss_ran = ("loss1", "KIST") in counts
    if BACKEND == "local":
        assert not loss_ran
        skipped = "variant loss1 (loss 1% on client links) skipped: the local backend cannot shape client links"
        assert any(n.startswith(skipped) for n in live.phase_notes) and skipped in md
    else:
        assert loss_ran
    assert "| load2 | load x2 | 20 | 10 |" in md


def test_nothing_is_left_running(live: RunOutcome) -> None:
    assert live.network_dir is not None and not live.network_dir.exists()
    leftovers = [p.name for p in Path("/proc").iterdir() if p.name.isdigit() and _runs_in(p, str(live.network_dir))]
    assert leftovers == []


def _runs_in(proc: Path, needle: str) -> bool:
    try:
        return needle in (proc / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
