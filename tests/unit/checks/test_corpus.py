"""The committed corpus: a few real patched-Tor runs that take every model branch real runs took.

Chosen by ``python -m harness.checks.corpus`` (greedy set cover) from main-job stores and the
real-Tor trace; see the file's header. Replayed here in well under a second: a model change
that breaks a rare path (a closed channel, a failed write, KISTLite's fallback limit, ...)
fails the unit suite without Tor, and so does one that stops the corpus taking a branch.
"""

from __future__ import annotations

from pathlib import Path

from harness.checks.corpus import Candidate, greedy_cover
from harness.checks.coverage import ModelCoverage
from harness.checks.differential import Recorded, check
from kist_reference import trace

DATA = Path(__file__).resolve().parents[2] / "data"
CORPUS = DATA / "corpus-runs.jsonl"
BRANCHES = DATA / "corpus-branches.txt"


def _expected() -> set[str]:
    return {ln for ln in BRANCHES.read_text().splitlines() if ln and not ln.startswith("#")}


def test_corpus_replays_without_divergence_and_takes_every_recorded_branch(tmp_path: Path) -> None:
    records = list(trace.read_records(CORPUS))
    summary = check([Recorded("corpus", r.sched, trace.to_wire(r)) for r in records], tmp_path,
                    coverage=ModelCoverage())
    assert summary.runs == len(records) and summary.divergences == ()
    assert summary.invariant_violations == ()
    assert summary.coverage is not None
    taken = summary.coverage.store.keys()
    lost = sorted(_expected() - taken)
    assert not lost, ("the corpus no longer takes these model branches (a model change broke a rare "
                      "path, or renamed it: then regenerate with python -m harness.checks.corpus):\n"
                      + "\n".join(lost))


def test_corpus_is_small_and_from_real_tor() -> None:
    assert CORPUS.stat().st_size < 300_000
    header = [ln for ln in CORPUS.read_text().splitlines() if ln.startswith("#")]
    assert any("patched Tor 0.4.9.11" in ln for ln in header)
    assert len(_expected()) >= 100


def _cand(name: str, size: int, *branches: str, diverged: bool = False) -> Candidate:
    return Candidate(name, None, size, frozenset(branches), diverged)


def test_greedy_cover_takes_most_new_branches_per_byte_and_skips_divergent_runs() -> None:
    cands = [_cand("big", 1000, "a", "b", "c"), _cand("ab", 10, "a", "b"), _cand("c", 10, "c"),
             _cand("bad", 1, "a", "b", "c", "d", diverged=True)]
    assert [c.source for c in greedy_cover(cands)] == ["ab", "c"]  # "d": only a divergent run takes it
