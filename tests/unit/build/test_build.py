"""harness.build without building Tor: series checks, cache keys, sources, the warm path."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness import build
from harness.errors import InputError

PATCH = """\
From 0123456789abcdef0123456789abcdef01234567 Mon Sep 17 00:00:00 2001
From: Someone <someone@example.org>
Date: Tue, 24 Nov 2026 16:56:48 +0000
Subject: [PATCH] Change a line

Why it changes.

Forwarded: no
Last-Update: 2026-11-24
---
 a.txt | 2 +-
 1 file changed, 1 insertion(+), 1 deletion(-)

diff --git a/a.txt b/a.txt
--- a/a.txt
+++ b/a.txt
@@ -1 +1 @@
-old
+new
"""


def _series(tmp_path: Path, patches: dict[str, str], order: list[str] | None = None) -> Path:
    d = tmp_path / "patches"
    d.mkdir()
    for name, text in patches.items():
        (d / name).write_text(text)
    (d / "series").write_text("# comment\n" + "\n".join(order if order is not None else patches) + "\n")
    return d


def test_series_reads_order_description_and_digest(tmp_path: Path) -> None:
    d = _series(tmp_path, {"0001-a.patch": PATCH, "0002-b.patch": PATCH.replace("new", "newer")},
                ["0002-b.patch", "0001-a.patch"])
    s = build.load_series(d)
    assert [p.name for p in s.patches] == ["0002-b.patch", "0001-a.patch"]
    assert s.patches[0].description == "Change a line"
    # Order is part of the identity of a series.
    (d / "series").write_text("0001-a.patch\n0002-b.patch\n")
    assert build.load_series(d).digest != s.digest


def test_series_digest_follows_content(tmp_path: Path) -> None:
    d = _series(tmp_path, {"0001-a.patch": PATCH})
    before = build.load_series(d).digest
    (d / "0001-a.patch").write_text(PATCH.replace("+new", "+other"))
    assert build.load_series(d).digest != before


def test_empty_series_without_directory_or_patches(tmp_path: Path) -> None:
    assert build.load_series(None).patches == ()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert build.load_series(empty).digest == build.load_series(None).digest


def test_listed_patch_missing_names_series_line(tmp_path: Path) -> None:
    d = _series(tmp_path, {"0001-a.patch": PATCH}, ["0001-a.patch", "0002-gone.patch"])
    with pytest.raises(InputError, match=r"series:3: patch 0002-gone.patch is listed"):
        build.load_series(d)


def test_patches_without_series_file_rejected(tmp_path: Path) -> None:
    d = tmp_path / "p"
    d.mkdir()
    (d / "0001-a.patch").write_text(PATCH)
    with pytest.raises(InputError, match="no `series` file"):
        build.load_series(d)


@pytest.mark.parametrize("drop, field", [("Forwarded: no\n", "Forwarded"),
                                         ("Last-Update: 2026-11-24\n", "Last-Update"),
                                         ("Subject: [PATCH] Change a line\n", "Description")])
def test_dep3_fields_required(tmp_path: Path, drop: str, field: str) -> None:
    d = _series(tmp_path, {"0001-a.patch": PATCH.replace(drop, "")})
    with pytest.raises(InputError, match=f"0001-a.patch: DEP-3 header field.*{field}"):
        build.load_series(d)


def test_quilt_options_other_than_p1_rejected(tmp_path: Path) -> None:
    d = _series(tmp_path, {"0001-a.patch": PATCH}, ["0001-a.patch -p0"])
    with pytest.raises(InputError, match="series:2: options '-p0'"):
        build.load_series(d)


def test_suites_file_is_part_of_the_series(tmp_path: Path) -> None:
    d = _series(tmp_path, {"0001-a.patch": PATCH})
    plain = build.load_series(d)
    (d / "suites").write_text("# new tests\nscheduler/kist_run_event\n")
    with_suites = build.load_series(d)
    assert with_suites.suites == ("scheduler/kist_run_event",)
    assert with_suites.digest != plain.digest


def test_failed_hunks_named_from_patch_output() -> None:
    out = ("checking file src/core/or/scheduler.c\n"
           "Hunk #2 FAILED at 600.\n"
           "checking file src/core/or/relay.c\n"
           "Hunk #1 succeeded at 10.\n"
           "Hunk #3 FAILED at 3200.\n")
    assert build._failed_hunks(out) == ("src/core/or/scheduler.c hunk #2 (at line 600), "
                                        "src/core/or/relay.c hunk #3 (at line 3200)")
    assert "does not exist" in build._failed_hunks("can't find file to patch at input line 5\n")


def test_cache_key_depends_on_source_series_and_flags(tmp_path: Path) -> None:
    empty = build.load_series(None)
    d = _series(tmp_path, {"0001-a.patch": PATCH})
    one = build.load_series(d)
    base = build.cache_key("debian:abc", empty, ())
    assert base == build.cache_key("debian:abc", empty, ())
    assert len({base, build.cache_key("debian:abd", empty, ()), build.cache_key("debian:abc", one, ()),
                build.cache_key("debian:abc", empty, ("--disable-module-relay",))}) == 4


def test_source_parse(tmp_path: Path) -> None:
    assert build.Source.parse("debian") == build.Source(build.SourceKind.DEBIAN, "tor")
    assert build.Source.parse("debian:tor-nightly").location == "tor-nightly"
    tarball = tmp_path / "tor-0.4.9.11.tar.gz"
    tarball.write_bytes(b"x")
    assert build.Source.parse(str(tarball)).kind is build.SourceKind.TARBALL
    repo = tmp_path / "tor"
    (repo / ".git").mkdir(parents=True)
    assert build.Source.parse(str(repo)).kind is build.SourceKind.GIT
    with pytest.raises(InputError, match="neither"):
        build.Source.parse(str(tmp_path / "nothing-here"))


def _fake_entry(cache: Path, key: str, version: str = "0.4.9.11") -> Path:
    entry = cache / "builds" / key
    (entry / "bin").mkdir(parents=True)
    for name in ("tor", "tor-gencert"):
        (entry / "bin" / name).write_text("#!/bin/sh\n")
        os.chmod(entry / "bin" / name, 0o755)
    (entry / "build.json").write_text(json.dumps({
        "version": version, "series_hash": "s" * 64, "cache_key": key, "source": "tarball x",
        "suites": [{"pattern": "scheduler/..", "passed": 8, "skipped": 0, "duration_s": 0.4}],
    }))
    return entry


def test_warm_call_reads_the_cache_and_builds_nothing(tmp_path: Path) -> None:
    tarball = tmp_path / "tor.tar.gz"
    tarball.write_bytes(b"not really a tarball")
    cache = tmp_path / "cache"
    src = build.Source.parse(str(tarball))
    key = build.cache_key(build._resolve(src, cache).ident, build.load_series(None), ())
    entry = _fake_entry(cache, key)
    events: list[build.StepEvent] = []
    result = build.ensure_built(src, None, events.append, cache_dir=cache)
    assert result.tor == entry / "bin" / "tor" and result.tor.is_absolute()
    assert result.cached and result.version == "0.4.9.11" and result.cache_key == key
    assert result.suites[0].passed == 8
    assert [(e.step, e.status) for e in events] == [("cache", "cached")]


def test_incomplete_cache_entry_is_not_a_hit(tmp_path: Path) -> None:
    entry = _fake_entry(tmp_path, "k")
    (entry / "bin" / "tor-gencert").unlink()
    assert build._load(entry) is None
    assert build._load(tmp_path / "builds" / "missing") is None
