"""kist_scheduler_run (scheduler_kist.c:600-772) on hand-made states: the four end cases,
to_readd, the 8-cell write rule, closed and empty channels, mid-run pushes, run interval.
Covers test_scheduler.c loop_kist and kist_pending_list, without mocking the limit,
the flush or the EWMA heap."""

from __future__ import annotations

from collections.abc import Callable

from kist_reference.channel import IDLE, PENDING, WAITING_FOR_CELLS, WAITING_TO_WRITE, Channel
from kist_reference.ewma import Circuit, Mux
from kist_reference.recorder import ScriptedEnv
from kist_reference.scheduler import KistLitePolicy, KistPolicy, RunState

State = Callable[..., RunState]


def run(st: RunState, **kw: int) -> ScriptedEnv:
    env = ScriptedEnv(st, **kw)
    KistPolicy().run(st, env)
    return env


def test_one_cell_then_case_2(make_state: State) -> None:
    st = make_state(KistPolicy(), [(1, [(10, 0.0, 1)])])
    env = run(st)
    assert env.ops() == ["p:1", "c:1:1", "f:1:10:0:0", "k:1:2"]
    assert st.channels[1].state == WAITING_FOR_CELLS and st.pending.ids() == ()
    assert [tuple(w) for w in env.end] == [(1, 514, 0)]  # end-of-run write of the outbuf


def test_case_4_until_the_limit_then_case_3(make_state: State) -> None:
    # room for 3 whole cells (1639 // 543 == 3): three flushes, then "cells left, cannot write"
    st = make_state(KistPolicy(), [(1, [(10, 0.0, 9)])], limits={1: 543 * 3 + 10})
    env = run(st)
    assert env.ops() == ["p:1", "c:1:1", "f:1:10:0:0", "k:1:4"] * 2 + ["p:1", "c:1:1", "f:1:10:0:0", "k:1:3"]
    assert env.readd == (1,) and env.final == (1,)
    ch = st.channels[1]
    assert ch.state == PENDING and ch.written == 3 * 543


def test_limit_zero_pops_without_flushing(make_state: State) -> None:
    st = make_state(KistPolicy(), [(1, [(10, 0.0, 2)])], limits={1: 0})
    env = run(st)
    assert env.ops() == ["p:1", "c:1:0", "k:1:3"]
    assert env.final == (1,) and [tuple(w) for w in env.end] == [(1, 0, 0)]


def test_case_1_last_cell_and_limit_at_once(make_state: State) -> None:
    st = make_state(KistPolicy(), [(1, [(10, 0.0, 1)])], limits={1: 543})
    assert run(st).ops()[-1] == "k:1:1"


def test_switch_writes_previous_outbuf_only_above_eight_cells(make_state: State) -> None:
    # 1 and 2 alternate (equal counts; 1 sends, grows, 2 becomes better). Channel 1 starts with
    # 7 cells' worth of outbuf: after one more cell it holds 8*514 = 4112, not > 4112: no write.
    st = make_state(KistPolicy(), [(1, [(10, 0.0, 2)]), (2, [(20, 0.0, 2)])], outbufs={1: 7 * 514})
    env = run(st)
    ops = env.ops()
    assert ops[:6] == ["p:1", "c:1:1", "f:1:10:0:0", "k:1:4", "p:2", "s:1:4112:0"]
    assert "s:2:514:0" in ops
    # the next switch back from 2 to 1: 1 holds 9 cells now -> written (kernel takes all)
    assert "s:1:4626:1" in ops and "w:1:4626:0" in ops


def test_closed_channel_goes_idle(make_state: State) -> None:
    st = make_state(KistPolicy(), [(1, [(10, 0.0, 2)])])
    st.channels[1].open = False
    env = run(st)
    assert env.ops() == ["p:1", "c:1:1", "k:1:closed"]
    assert st.channels[1].state == IDLE


def test_nothing_to_flush_goes_waiting_for_cells(make_state: State) -> None:
    st = make_state(KistPolicy(), [(1, [])])
    env = run(st)
    assert env.ops() == ["p:1", "c:1:1", "k:1:empty"]
    assert st.channels[1].state == WAITING_FOR_CELLS


def test_best_channel_first_by_raw_head_count(make_state: State) -> None:
    st = make_state(KistPolicy(), [(1, [(10, 0.5, 1)]), (2, [(20, 3.0, 1)]), (3, [(30, 0.25, 1)])])
    # the array is taken as recorded, even if it is not a valid heap: pop takes index 0
    assert [s for s in run(st).ops() if s.startswith("p:")] == ["p:1", "p:3", "p:2"]


def test_mid_run_push_keeps_a_stale_socket_entry(make_state: State) -> None:
    st = make_state(KistPolicy(), [(1, [(10, 0.0, 12)]), (2, [(20, 9.0, 1)])],
                    outbufs={1: 8 * 514}, limits={1: 543 * 2})
    # channel 5 waits to write; its socket entry is from an earlier run: one cell of room left
    waiting = Channel(5, Mux.from_heap([Circuit(50, 0.0, 0, 3)], 0, 3), state=WAITING_TO_WRITE,
                      limit=543 * 10, written=543 * 9)
    st.channels[5] = waiting
    env = ScriptedEnv(st)
    env.after_write(1, "ww", target=5)  # connection_or_flushed_some on 5 while 1 is written
    KistPolicy().run(st, env)
    assert env.ops() == [
        "p:1", "c:1:1", "f:1:10:0:0", "k:1:4",
        "p:1", "c:1:1", "f:1:10:0:0", "k:1:3",
        "p:2", "s:1:5140:1", "w:1:5140:0", "x:5:ww", "c:2:1", "f:2:20:0:0", "k:2:2",
        "p:5", "s:2:514:0", "c:5:1", "f:5:50:0:0", "k:5:3",
    ]
    # written was never reset for 5 (init_socket_info only runs for channels pending at start)
    assert waiting.written == 543 * 10
    assert env.readd == (1, 5) and set(env.final) == {1, 5}


def test_next_run_delay() -> None:
    from kist_reference.channel import Pending
    pol = KistPolicy()
    st = RunState(Pending(), scale_factor=0.5, tick_len=10, interval_ms=2)
    assert pol.next_run_us(st, 0) == -1
    st.pending.push(Channel(1, state=PENDING))
    assert pol.next_run_us(st, 0) == 2000
    assert pol.next_run_us(st, 1) == 1000
    assert pol.next_run_us(st, -5) == 2000  # negative diff clamped to 0
    assert pol.next_run_us(st, 2) == 0


def test_kistlite_ignores_tcp_info(make_state: State) -> None:
    from kist_reference.trace import TcpInfo
    st = make_state(KistLitePolicy(), [(1, [(10, 0.0, 1)])])
    assert KistLitePolicy().socket_limit(st, st.channels[1], TcpInfo(1, 0, 1448, 0)) == 34752
    assert KistPolicy().socket_limit(st, st.channels[1], TcpInfo(1, 0, 1448, 0)) == 2896


def test_einval_sets_no_kernel_support_for_good(make_state: State) -> None:
    from kist_reference.trace import SockError
    st = make_state(KistPolicy(), [(1, [(10, 0.0, 1)])])
    pol = KistPolicy()
    assert pol.socket_limit(st, st.channels[1], SockError(104)) == 34752 and not st.no_kernel_support
    pol.socket_limit(st, st.channels[1], SockError(22))
    assert st.no_kernel_support


def test_ideal_policy_takes_the_global_best_and_writes_every_cell(make_state: State) -> None:
    from kist_reference.ideal import IdealPolicy
    # Array order puts channel 1 (raw 2.0) first although channel 2 holds 0.5: Tor pops 1,
    # Algorithm 1 takes 2's circuit first; it writes each cell to the kernel at once.
    st = make_state(IdealPolicy(), [(1, [(10, 2.0, 1)]), (2, [(20, 0.5, 1)])])
    env = ScriptedEnv(st)
    IdealPolicy().run(st, env)
    assert env.ops() == ["p:2", "c:2:1", "f:2:20:0:0", "w:2:514:0", "k:2:2",
                         "p:1", "c:1:1", "f:1:10:0:0", "w:1:514:0", "k:1:2"]
    tor = make_state(KistPolicy(), [(1, [(10, 2.0, 1)]), (2, [(20, 0.5, 1)])])
    assert run(tor).ops()[0] == "p:1"


def test_run_interval_and_scheduler_selection() -> None:
    from kist_reference.scheduler import kist_run_interval, select_scheduler
    assert kist_run_interval() == 2
    assert kist_run_interval(consensus=10) == 10
    assert kist_run_interval(consensus=0) == 2  # clamped: the consensus cannot disable KIST
    assert kist_run_interval(consensus=500) == 100
    assert kist_run_interval(torrc_ms=7, consensus=50) == 7
    assert select_scheduler() == "KIST"
    assert select_scheduler(kernel_support=False) == "KISTLite"
    assert select_scheduler(("KIST", "Vanilla"), kernel_support=False) == "Vanilla"


def test_wants_writes_during_the_kernel_write_does_not_double_add_24700(make_state: State) -> None:
    """test_scheduler.c kist_pending_list, last part: a kernel write of a channel waiting in
    to_readd calls wants_writes on it; it must end up in channels_pending exactly once."""
    st = make_state(KistPolicy(), [(1, [(10, 0.0, 5)]), (2, [(20, 1.0, 5)])],
                    limits={1: 600, 2: 600}, outbufs={1: 8 * 514})
    env = ScriptedEnv(st)
    env.after_write(1, "ww")
    KistPolicy().run(st, env)
    assert env.ops() == ["p:1", "c:1:1", "f:1:10:0:0", "k:1:3",
                         "p:2", "s:1:4626:1", "w:1:4626:0", "x:1:ww", "c:2:1", "f:2:20:0:0", "k:2:3"]
    assert sorted(env.final) == [1, 2] and len(st.pending) == 2
    assert st.channels[1].state == st.channels[2].state == PENDING


def test_several_runs_in_a_row(make_state: State) -> None:
    """test_scheduler.c loop_kist: runs with cells arriving in between."""
    pol = KistPolicy()
    st = make_state(pol, [(1, [(10, 0.0, 1)]), (2, [(20, 0.0, 1)])])
    run(st)
    assert st.pending.ids() == () and st.channels[1].state == WAITING_FOR_CELLS
    c1 = st.channels[1]
    c1.mux.append_cells(st.scale_factor, c1.mux.circuits[10], 2)
    st.pending.has_waiting_cells(c1)
    c1.written = 0  # init_socket_info at the start of the next run
    env = run(st)
    assert env.ops() == ["p:1", "c:1:1", "f:1:10:0:0", "k:1:4", "p:1", "c:1:1", "f:1:10:0:0", "k:1:2"]
    assert st.pending.ids() == ()
