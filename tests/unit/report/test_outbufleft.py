"""Cells KIST runs left in the outbuf: counted per relay and arm, Vanilla's runs ignored."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from harness.report import outbufleft

RawStore = Callable[[Path, str, list[tuple[str, str, str, str]]], Path]  # conftest's make_raw_store


def _store(make: RawStore, tmp: Path, rows: list[tuple[str, str, dict[str, object]]]) -> Path:
    return make(tmp, "KIST_QTIME", [(fp, arm, json.dumps(data), "") for fp, arm, data in rows])


def test_cells_without_an_outbuf_time_are_the_ones_left(tmp_path: Path, make_raw_store: RawStore) -> None:
    rows: list[tuple[str, str, dict[str, object]]] = [
        ("AAAAAAAAAA", "KIST", {"run": 1, "sched": "KIST", "n": 3, "cells": "5:1:900:1200,5:1:950:-,5:2:-:-"}),
        ("AAAAAAAAAA", "KIST", {"run": 2, "sched": "KIST", "n": 1, "cells": "5:1:100:400"}),
        ("AAAAAAAAAA", "Vanilla", {"run": 3, "sched": "Vanilla", "n": 2, "cells": "5:1:100:-,5:1:90:-"}),
        ("BBBBBBBBBB", "KIST", {"run": 1, "sched": "KIST", "n": 0, "cells": ""}),
    ]
    out = outbufleft.outbuf_left(_store(make_raw_store, tmp_path, rows))
    assert [(r.relay, r.arm, r.cells, r.left) for r in out] == [("AAAAAAAA", "KIST", 4, 2)]
    assert out[0].share == 0.5
    note = outbufleft.note(tmp_path / "store.sqlite")
    assert note is not None and "AAAAAAAA KIST 50.0% of 4" in note


def test_no_kist_cells_no_note(tmp_path: Path, make_raw_store: RawStore) -> None:
    assert outbufleft.note(_store(make_raw_store, tmp_path, [])) is None
