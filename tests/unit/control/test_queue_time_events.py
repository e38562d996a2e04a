"""The patch's queue-time events: typed, and asked for only on request."""

from __future__ import annotations

from harness.control import events as ev
from harness.store.records import Kind


def test_kist_qtime_is_typed() -> None:
    rec = ev.parse_line("650 KIST_QTIME RUN=7 SCHED=KIST T0=1000 N=2 CELLS=5:9:1500:-,5:9:-:20000")
    assert rec.kind == "KIST_QTIME"
    assert rec.data == {"run": 7, "sched": "KIST", "t0_ns": 1000, "n": 2, "cells": "5:9:1500:-,5:9:-:20000"}
    assert ev.parse_line("650 KIST_QTIME RUN=8 SCHED=KIST T0=1 N=0 CELLS=").data["cells"] == ""


def test_kist_kqtime_is_typed_and_dash_means_none() -> None:
    rec = ev.parse_line("650 KIST_KQTIME CHAN=5 T=1000 BYTES=4000 SCHEDNS=- SNDNS=2500")
    assert rec.kind == "KIST_KQTIME"
    assert rec.data == {"chan": 5, "t_ns": 1000, "bytes": 4000, "sched_ns": None, "snd_ns": 2500}
    bad = ev.parse_line("650 KIST_KQTIME CHAN=5 T=1000 BYTES=lots SCHEDNS=1 SNDNS=2")
    assert bad.kind == Kind.ERROR and "BYTES" in bad.data["reason"]


def test_volume_events_are_opt_in() -> None:
    assert {"KIST_RUN", "KIST_OVERHEAD"} <= set(ev.CUSTOM_EVENTS)
    assert {"KIST_QTIME", "KIST_KQTIME"} <= set(ev.OPT_IN_EVENTS)
    assert not set(ev.CUSTOM_EVENTS) & set(ev.OPT_IN_EVENTS)
