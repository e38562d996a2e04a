"""The main job on a real private network: every KIST decision of the patched relays is
replayed through kist_reference, and the report's numbers are checked against the store.

Builds the patched Tor (cached by `kist-harness build`), so the first run on a fresh
machine takes the build's time too.
"""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path

import pytest

from harness.runjob import RunConfig, RunOutcome, run

pytestmark = pytest.mark.differential

BACKEND = os.environ.get("KIST_HARNESS_DIFF_BACKEND", "local")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> RunOutcome:
    out = tmp_path_factory.mktemp("run") / "out"
    return run(RunConfig(scenario="default", backend=BACKEND, out=out, duration_s=40, period_s=10, seed=3))


def test_every_recorded_decision_matches_the_faithful_model(live: RunOutcome) -> None:
    assert live.divergences == 0
    assert live.runs > 100 and live.decisions >= 10_000
    assert not (live.out / "divergences").exists()


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
        "AND c.arm IN ('KIST', 'Vanilla') GROUP BY c.arm"))
    md = (live.out / "report" / "summary.md").read_text()
    section = md.split("## Time to last byte, 320 KiB", 1)[1].split("\n## ", 1)[0]
    shown = {m.group(1): int(m.group(2)) for m in re.finditer(r"^\| (KIST|Vanilla) \| (\d+) \|", section, re.M)}
    assert shown == expected
    assert f"decisions checked: {live.decisions:,}; divergences from the faithful model: 0." in md
    for png in ("ttlb_327680.png", "goodput.png", "pending.png", "overhead.png"):
        assert (live.out / "report" / png).read_bytes()[:4] == b"\x89PNG"


def test_nothing_is_left_running(live: RunOutcome) -> None:
    assert live.network_dir is not None and not live.network_dir.exists()
    leftovers = [p.name for p in Path("/proc").iterdir() if p.name.isdigit() and _runs_in(p, str(live.network_dir))]
    assert leftovers == []


def _runs_in(proc: Path, needle: str) -> bool:
    try:
        return needle in (proc / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
