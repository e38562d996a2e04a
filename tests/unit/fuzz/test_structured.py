"""Structured Hypothesis strategies: KIST_RUN lines and TOML tables built from any values."""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.config import parse_scenario
from harness.control.events import parse_line
from harness.errors import InputError
from harness.remote import inventory
from kist_reference import replay, trace

KEYS = ("V", "RUN", "SCHED", "T0", "TI", "T1", "IVAL", "FACTOR", "NOKS", "HW", "EWMAF", "TICKLEN", "NPEND",
        "CHANS", "MUX", "HEAP", "SOCK", "STEPS", "READD", "FINAL", "DIFF", "NEXT")
numbers = st.one_of(st.integers(-(2**70), 2**70).map(str), st.floats().map(float.hex),
                    st.sampled_from(["0", "-1", "", "x", "nan", "0x1p+0", "-"]))
element = st.lists(numbers, min_size=1, max_size=7).map(":".join)
value = st.one_of(numbers, st.lists(element, max_size=4).map(",".join), st.sampled_from(trace.SCHEDULERS),
                  st.text(string.printable.strip(), max_size=12))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(KEYS), value, min_size=15))
def test_any_kist_run_line_parses_or_is_refused_with_trace_error(fields: dict[str, str]) -> None:
    line = "650 KIST_RUN " + " ".join(f"{k}={v}".replace(" ", "") for k, v in fields.items())
    assert parse_line(line).kind in ("KIST_RUN", "error")  # the collector never raises
    try:
        rec = trace.parse_wire(line)
    except trace.TraceError:
        return
    replay.replay_run(rec)


toml_leaf = st.one_of(st.integers(-(2**63), 2**63 - 1), st.floats(), st.booleans(), st.text(max_size=8))
toml_value = st.recursive(toml_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)), max_leaves=8)
SCENARIO_KEYS = ("network", "authorities", "relays", "clients", "fileservers", "traffic", "variants")


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(SCENARIO_KEYS), toml_value, max_size=5))
def test_any_scenario_table_is_a_network_or_an_input_error(data: dict[str, Any]) -> None:
    try:
        parse_scenario(data, "fuzz.toml")
    except InputError as exc:
        assert "fuzz.toml" in str(exc)


HOST_KEYS = ("address", "port", "user", "key", "agent", "sudo", "run", "unit", "pid_file", "control_port",
             "control_socket", "allow", "extra_torrc", "known_hosts", "verify_timeout_s", "tor_binary")


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(HOST_KEYS), toml_value, max_size=8))
def test_any_inventory_host_is_a_host_or_an_input_error(host: dict[str, Any]) -> None:
    try:
        inventory.parse({"hosts": {"h": host}}, Path("inv.toml"))
    except InputError as exc:
        assert "inv.toml" in str(exc)


@pytest.mark.parametrize("bad", ["TICKLEN=0", "TICKLEN=-3", "TICKLEN=601", "EWMAF=0x0p+0", "EWMAF=-0x1p-1",
                                 "EWMAF=0x1p+1"])
def test_params_out_of_tors_range_are_refused_naming_the_field(bad: str) -> None:
    line = (Path(__file__).parents[2] / "data" / "example-events.txt").read_text().splitlines()
    run = next(x for x in line if x.startswith("650 KIST_RUN"))
    key = bad.split("=")[0]
    mutated = " ".join(bad if tok.startswith(key + "=") else tok for tok in run.split(" "))
    with pytest.raises(trace.TraceError) as err:
        trace.parse_wire(mutated)
    assert err.value.field == key and bad.split("=")[1] in str(err.value)
