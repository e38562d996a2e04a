"""The mutant catalogue: every mutant applies, exactly, to the Tor source the build cache unpacks.

The source is the one ``kist-harness build`` downloaded (the Debian .dsc in the cache),
with the project's patch series applied, as the kept tree (harness.buildtree) is made; a
mutant written for older code fails here, in seconds, with its name and file.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import build, mutants
from harness.errors import InputError
from harness.mutants import matrix

CATALOG = mutants.load()


def _dsc() -> Path | None:
    found = sorted((build.default_cache_dir() / "sources" / "debian").glob("tor_*.dsc"))
    return found[-1] if found else None


@pytest.fixture(scope="module")
def patched_tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    dsc = _dsc()
    if dsc is None or shutil.which("dpkg-source") is None:
        pytest.skip("no Tor source in the build cache: run `kist-harness build` once (needs dpkg-source)")
    dest = tmp_path_factory.mktemp("tor") / "src"
    subprocess.run(["dpkg-source", "-x", str(dsc), str(dest)], check=True, capture_output=True)
    logs = dest.parent / "logs"
    logs.mkdir()
    build.apply_series(build.load_series(build.default_patches_dir()), dest, logs)
    yield dest


def test_catalogue_has_the_four_historical_bugs_and_enough_synthetic_mutants() -> None:
    hist = {m.name.split("-")[0] for m in CATALOG if m.kind == "historical"}
    assert hist == {"h23751", "h24665", "h24700", "h29168"}
    synthetic = [m for m in CATALOG if m.kind == "synthetic"]
    assert len(synthetic) >= 12
    files = {f.rsplit("/", 1)[-1] for m in synthetic for f in m.files}
    assert {"scheduler_kist.c", "scheduler.c", "scheduler_vanilla.c", "circuitmux_ewma.c"} <= files
    assert all(m.doc and (m.kind != "historical" or m.adapted) for m in CATALOG)


@pytest.mark.parametrize("mutant", CATALOG, ids=[m.name for m in CATALOG])
def test_each_mutant_applies_exactly_once_and_changes_the_file(mutant: mutants.Mutant, patched_tree: Path) -> None:
    texts = mutants.check(mutant, patched_tree)
    for rel, text in texts.items():
        assert text != (patched_tree / rel).read_text()


def test_no_two_mutants_are_the_same_change() -> None:
    seen = {tuple((e.file, e.old, e.new) for e in m.edits) for m in CATALOG}
    assert len(seen) == len(CATALOG)


def test_apply_writes_all_or_nothing(tmp_path: Path) -> None:
    (tmp_path / "a.c").write_text("int x = 1;\nint y = 2;\n")
    ok = mutants.Mutant("m", "synthetic", "doc", (mutants.Edit("a.c", "x = 1", "x = 3"),))
    bad = mutants.Mutant("m2", "synthetic", "doc", (mutants.Edit("a.c", "x = 1", "x = 3"),
                                                    mutants.Edit("a.c", "z = 9", "z = 0")))
    with pytest.raises(mutants.MutantDoesNotApply, match=r"m2 edit #2 does not apply.*'z = 9'.*does not occur in a.c"):
        mutants.apply(bad, tmp_path)
    assert (tmp_path / "a.c").read_text() == "int x = 1;\nint y = 2;\n"  # the first edit was not written
    mutants.apply(ok, tmp_path)
    assert (tmp_path / "a.c").read_text() == "int x = 3;\nint y = 2;\n"


def test_an_edit_that_is_not_unique_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.c").write_text("x++;\nx++;\n")
    m = mutants.Mutant("dup", "synthetic", "doc", (mutants.Edit("a.c", "x++;", "x--;"),))
    with pytest.raises(mutants.MutantDoesNotApply, match="occurs 2 times"):
        mutants.check(m, tmp_path)


def test_a_missing_file_names_the_mutant(tmp_path: Path) -> None:
    m = mutants.Mutant("gone", "synthetic", "doc", (mutants.Edit("src/nope.c", "a", "b"),))
    with pytest.raises(mutants.MutantDoesNotApply, match="mutant gone edit #1: cannot read src/nope.c"):
        mutants.check(m, tmp_path)


GOOD = """
[[mutant]]
name = "one"
kind = "synthetic"
doc = "a doc"
[[mutant.edit]]
file = "src/a.c"
old = "x"
new = "y"
"""


@pytest.mark.parametrize(("text", "message"), [
    ("[[mutant]\n", "not valid TOML"),
    ("title = 'x'\n", r"no \[\[mutant\]\] tables"),
    (GOOD.replace('doc = "a doc"\n', ""), r"mutant 'one': field 'doc' is missing"),
    (GOOD.replace('kind = "synthetic"', 'kind = "other"'), "kind 'other': expected one of historical, synthetic"),
    (GOOD.replace('kind = "synthetic"', 'kind = "historical"'), "says how it was adapted"),
    (GOOD.replace('new = "y"', 'new = "x"'), "edit #1: old and new are the same"),
    (GOOD.replace('new = "y"\n', ""), "edit #1: expected exactly the fields file, old, new"),
    (GOOD.replace('file = "src/a.c"', 'file = "../a.c"'), "must be relative to the Tor source root"),
    (GOOD.replace('name = "one"', 'name = "one two"'), "name may hold letters"),
    (GOOD + GOOD, "the name is used twice"),
    (GOOD.replace('doc = "a doc"', 'doc = "a doc"\nfoo = 1'), r"unknown field\(s\) foo"),
])
def test_bad_catalogue_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "cat.toml"
    path.write_text(text)
    with pytest.raises(InputError, match=message) as info:
        mutants.load(path)
    assert str(path) in str(info.value)


def test_select_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(InputError, match="no mutant named nope; the catalogue has: .*h23751-closed-channel"):
        mutants.select(CATALOG, ["nope"])
    assert [m.name for m in mutants.select(CATALOG, ["ewma-no-rescale", "h29168-outbuf-ignored"])] == [
        "h29168-outbuf-ignored", "ewma-no-rescale"]


def test_matrix_markdown_and_summary_count_kills_by_kind() -> None:
    rows = [
        matrix.Row("baseline", "-", verdict="survived", runs=10, decisions=99),
        matrix.Row("h1", "historical", verdict="killed: differential", unit_tests="passed",
                   divergence={"run": 7, "relay": "kist", "index": 3, "expected": "flush 5", "actual": "flush 6"}),
        matrix.Row("s1", "synthetic", verdict="survived", unit_tests="killed: scheduler/kist_run", runs=4),
        matrix.Row("s2", "synthetic", verdict="killed: run failed", run_error="tor exited | 134"),
    ]
    s = matrix.summarize(rows)
    assert s["historical"].startswith("1/1 killed by the differential, 1/1 killed in all, 0/1")
    assert s["synthetic"].startswith("0/2 killed by the differential, 1/2 killed in all, 1/2")
    md = matrix.markdown(rows, 125.0, s)
    assert "| h1 | historical | killed: differential | kist run 7, decision 3: `flush 5` / `flush 6` |" in md
    assert "tor exited \\| 134" in md
    assert "total time: 2.1 min (125 s)" in md


def test_rows_round_trip_through_matrix_json(tmp_path: Path) -> None:
    rows = [matrix.Row("h1", "historical", digest="abc", verdict="survived", seconds={"total": 3.0})]
    matrix._write(tmp_path, rows, 3.0, 36.0, 6.0)
    again = matrix._load_rows(tmp_path)
    assert again["h1"] == rows[0]
    assert not matrix._load_rows(tmp_path / "nothing")
