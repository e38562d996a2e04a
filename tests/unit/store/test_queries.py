"""What the checks and the report read from a store: typed records back out of stored ones."""

from __future__ import annotations

import math
from pathlib import Path

from harness.control.events import parse_line
from harness.store import queries
from harness.store.db import open_store
from harness.store.records import (
    KIST_QTIME,
    KIST_RUN,
    STRADDLE,
    Context,
    Kind,
    Record,
)
from harness.store.typed import Gap, PhaseRecord, Session, VariantPlan, VariantResult

DATA = Path(__file__).parents[2] / "data" / "control" / "events.txt"


def _kist_runs() -> list[Record]:
    # events.txt: "<expected kind>\t<wire line>" per line
    lines = [line.split("\t", 1)[1] for line in DATA.read_text().splitlines() if line.startswith("KIST_RUN\t")]
    return [parse_line(line, 1.0) for line in lines]


def test_a_phase_is_its_plan_and_its_results_merged(tmp_path: Path) -> None:
    plan = VariantPlan("loss1", "loss 1% on client links", duration_s=60.0, period_s=30.0,
                       period_warning="too short", seed=2)
    result = VariantResult("loss1", 10.0, 70.0, 12, 1, {"KIST": 5, "Vanilla": 6}, "loss1: 1 of 12 ...")
    with open_store(tmp_path / "s.db") as s:
        s.write_batch([(Context("r.loss1", "harness"), plan.record(10.0)),
                       (Context("r", "harness"), VariantPlan("base", skipped="").record(0.0)),
                       (Context("r.loss1", "harness"), result.record())])
    with open_store(tmp_path / "s.db", readonly=True) as s:
        got = queries.phases(s)
    assert list(got) == ["r.loss1", "r"]  # in the order the phases were first recorded
    assert got["r.loss1"] == PhaseRecord("loss1", "loss 1% on client links", 30.0, 60.0, "too short", "",
                                         "loss1: 1 of 12 ...")
    assert got["r"].variant == "base" and got["r"].period_s is None


def test_downloads_read_back_typed_with_their_arm(tmp_path: Path) -> None:
    ok = {"client": "web0", "profile": "web", "size": 327680, "start": 5.0, "ttfb_s": 0.5, "ttlb_s": 1.5,
          "received": 327680, "outcome": "ok", "error": ""}
    failed = {**ok, "ttfb_s": None, "ttlb_s": None, "received": 0, "outcome": "failed", "error": "reset"}
    with open_store(tmp_path / "s.db") as s:
        s.write_batch([(Context("r", "web0", arm="KIST"), Record(Kind.DOWNLOAD, 5.0, ok)),
                       (Context("r", "web0", arm=STRADDLE), Record(Kind.DOWNLOAD, 6.0, failed))])
    with open_store(tmp_path / "s.db", readonly=True) as s:
        (c1, d1), (c2, d2) = queries.downloads(s)
    assert (c1.arm, d1.client, d1.size, d1.ttfb_s, d1.ttlb_s, d1.ok) == ("KIST", "web0", 327680, 0.5, 1.5, True)
    assert c2.arm == STRADDLE and not d2.ok and math.isnan(d2.ttlb_s)


def test_interval_and_qtime_cells_of_any_store_version(tmp_path: Path) -> None:
    runs = _kist_runs()
    assert runs, "events.txt holds KIST_RUN lines"
    old = Record(KIST_RUN, 0.5, {}, runs[0].raw)  # stored before the run's fields were kept
    with open_store(tmp_path / "s.db") as s:
        s.write_batch([(Context("r"), old), *((Context("r"), r) for r in runs),
                       (Context("r"), Record(KIST_QTIME, 2.0, {"run": 7, "cells": "5:1:10:-"})),
                       (Context("r"), Record(KIST_QTIME, 3.0, {"kw": {"RUN": "8", "CELLS": "5:1:-:-"}}))])
    with open_store(tmp_path / "s.db", readonly=True) as s:
        assert queries.interval_ms(s) == 2.0
        assert [(run, cells) for _c, run, cells in queries.qtimes(s)] == [(7, "5:1:10:-"), (8, "5:1:-:-")]
        assert [p for _c, p in queries.run_payloads(s)] == [r.raw for r in [old, *runs]]


def test_an_empty_store_has_no_interval(tmp_path: Path) -> None:
    with open_store(tmp_path / "s.db") as s:
        assert queries.interval_ms(s) is None and queries.phases(s) == {}


def test_collector_records_keep_their_stored_fields() -> None:
    gap = Gap(10.0, 12.5, "connection reset")
    assert gap.record() == Record(Kind.GAP, 10.0, {"start": 10.0, "end": 12.5, "seconds": 2.5,
                                                   "reason": "connection reset"})
    still = Gap(10.0, 20.0, "eof", open=True, last_error="refused").record()
    assert still.data["open"] is True and still.data["last_error"] == "refused"
    assert Session("r", "tcp 127.0.0.1:9051", {"seed": 3}).record(1.0) == Record(
        Kind.SESSION, 1.0, {"seed": 3, "run_id": "r", "control": "tcp 127.0.0.1:9051"})
