"""Output directories: the harness replaces only what it wrote, and checks before it touches anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import outdir
from harness.cli import main
from harness.errors import InputError


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_a_new_directory_is_created_and_marked(tmp_path: Path) -> None:
    owned = outdir.claim(tmp_path / "a" / "out", "test")
    (owned.path / "store.sqlite").write_text("x")
    owned.record()
    data = json.loads((owned.path / outdir.MARKER).read_text())
    assert data == {"made_by": "test", "entries": ["store.sqlite"]}


def test_a_folder_of_someone_elses_results_is_refused_untouched(tmp_path: Path) -> None:
    out = tmp_path / "results"
    (out / "thesis").mkdir(parents=True)
    (out / "thesis" / "chapter1.tex").write_text("months of work")
    (out / "data.csv").write_text("1,2,3")
    before = _tree(out)
    with pytest.raises(InputError, match=r"non-empty directory that kist-harness did not make"):
        outdir.claim(out, "test")
    assert _tree(out) == before


def test_an_earlier_run_is_replaced_but_a_file_added_since_is_not(tmp_path: Path) -> None:
    out = tmp_path / "out"
    owned = outdir.claim(out, "test")
    (out / "report").mkdir()
    (out / "report" / "index.html").write_text("old")
    (out / "store.sqlite").write_text("old")
    owned.record()
    outdir.claim(out, "test")  # the harness's own entries: removed
    assert sorted(p.name for p in out.iterdir()) == [outdir.MARKER]

    (out / "store.sqlite").write_text("new run")
    outdir.OwnedDir(out, "test").record()
    (out / "my-notes.txt").write_text("mine")
    with pytest.raises(InputError, match=r"also holds my-notes.txt"):
        outdir.claim(out, "test")
    assert (out / "store.sqlite").read_text() == "new run" and (out / "my-notes.txt").exists()


def test_a_file_where_a_directory_goes_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("keep")
    with pytest.raises(InputError, match="is not a directory"):
        outdir.check(tmp_path / "f")
    assert (tmp_path / "f").read_text() == "keep"


def test_replace_dir_replaces_an_earlier_report_only(tmp_path: Path) -> None:
    dest = tmp_path / "report"
    for text in ("first", "second"):
        staged = tmp_path / f"staged-{text}"
        staged.mkdir()
        (staged / "index.html").write_text(text)
        outdir.replace_dir(staged, dest, "test")
    assert (dest / "index.html").read_text() == "second"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "index.html").write_text("my own page")
    staged = tmp_path / "staged-third"
    staged.mkdir()
    with pytest.raises(InputError):
        outdir.replace_dir(staged, mine, "test")
    assert (mine / "index.html").read_text() == "my own page"


@pytest.mark.parametrize("scenario", ["MISSPELT.toml", "default"])
def test_run_refuses_a_foreign_out_before_anything_changes(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           scenario: str) -> None:
    """The issue's case: a misspelt scenario (or any run) must not empty a results folder first."""
    out = tmp_path / "results"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    assert main(["run", str(tmp_path / scenario) if scenario.endswith(".toml") else scenario,
                 "--out", str(out), "--backend", "local"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert ("does not exist" in err) if scenario.endswith(".toml") else ("did not make" in err)
    assert _tree(out) == {"keep.txt": b"precious"}


def test_report_refuses_a_foreign_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "s.sqlite"
    from harness.store.db import Store

    with Store(store):
        pass
    out = tmp_path / "site"
    out.mkdir()
    (out / "index.html").write_text("my site")
    assert main(["report", str(store), "--out", str(out)]) == 2
    assert "did not make" in capsys.readouterr().err
    assert (out / "index.html").read_text() == "my site"
