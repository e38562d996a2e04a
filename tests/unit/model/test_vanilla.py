"""vanilla_scheduler_run (scheduler_vanilla.c:51-146); covers test_scheduler.c loop_vanilla."""

from __future__ import annotations

from collections.abc import Callable

from kist_reference.channel import IDLE, WAITING_FOR_CELLS, WAITING_TO_WRITE
from kist_reference.recorder import ScriptedEnv
from kist_reference.scheduler import RunState, VanillaPolicy

State = Callable[..., RunState]


def run(st: RunState) -> ScriptedEnv:
    env = ScriptedEnv(st)
    VanillaPolicy().run(st, env)
    return env


def test_flushes_what_it_has_then_waits_for_cells(make_state: State) -> None:
    st = make_state(VanillaPolicy(), [(1, [(10, 0.0, 3)])])
    env = run(st)
    assert env.ops() == ["p:1", "v:1:64"] + ["f:1:10:0:0"] * 3 + ["k:1:short"]
    assert st.channels[1].state == WAITING_FOR_CELLS and st.channels[1].outbuf == 3 * 514


def test_exactly_fills_the_outbuf_cells_left(make_state: State) -> None:
    st = make_state(VanillaPolicy(), [(1, [(10, 0.0, 5)])], outbufs={1: 32768 - 2 * 514})
    env = run(st)
    assert env.ops() == ["p:1", "v:1:2", "f:1:10:0:0", "f:1:10:0:0", "k:1:wtw"]
    assert st.channels[1].state == WAITING_TO_WRITE


def test_exactly_fills_the_outbuf_no_cells_left(make_state: State) -> None:
    st = make_state(VanillaPolicy(), [(1, [(10, 0.0, 2)])], outbufs={1: 32768 - 2 * 514})
    assert run(st).ops()[-1] == "k:1:idle"
    assert st.channels[1].state == IDLE


def test_ceil_div_overshoot_reads_as_not_writeable(make_state: State) -> None:
    # 64 writeable cells, 100 queued: after 64 cells the outbuf is 32896, 128 bytes over the
    # high-water mark; the wrapped size_t subtraction plus CEIL_DIV gives 0: WAITING_TO_WRITE.
    # The overshoot is always below one cell, so Vanilla's "readd" branch is unreachable here.
    st = make_state(VanillaPolicy(), [(1, [(10, 0.0, 100)])])
    env = run(st)
    assert env.ops()[1] == "v:1:64" and env.ops()[-1] == "k:1:wtw" and env.readd == ()


def test_outbuf_far_over_highwater_reads_as_int_max_writeable(make_state: State) -> None:
    st = make_state(VanillaPolicy(), [(1, [(10, 0.0, 300)])], outbufs={1: 32768 + 600})
    env = run(st)
    assert env.ops()[1] == f"v:1:{2**31 - 1}"
    assert env.ops().count("f:1:10:0:0") == 300  # two flush calls: 256 (clamp) + 44
    assert env.ops()[-1] == "k:1:short"


def test_nothing_writeable(make_state: State) -> None:
    st = make_state(VanillaPolicy(), [(1, [(10, 0.0, 2)])], outbufs={1: 32768})
    assert run(st).ops() == ["p:1", "v:1:0", "k:1:none"]
    assert st.channels[1].state == WAITING_TO_WRITE


def test_no_cells_left_and_writeable(make_state: State) -> None:
    st = make_state(VanillaPolicy(), [(1, [(10, 0.0, 1)]), (2, [(20, 1.0, 64)])])
    env = run(st)
    assert "k:1:short" in env.ops()
    assert st.channels[1].state == WAITING_FOR_CELLS
