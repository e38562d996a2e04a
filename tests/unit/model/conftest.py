"""Builders for hand-made scheduler states (no tor, no files)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from kist_reference.channel import PENDING, Channel
from kist_reference.ewma import DEFAULT, Circuit, Mux
from kist_reference.scheduler import KistPolicy, Policy, RunState

F = DEFAULT.scale_factor


def mux_of(counts: Sequence[tuple[int, float, int]], recal: int = 0) -> Mux:
    """A mux whose heap holds (circ_id, count, queued cells) in this array order."""
    circs = [Circuit(cid, count, recal, q) for cid, count, q in counts]
    return Mux.from_heap(circs, recal, sum(q for _, _, q in counts))


def build(policy: Policy, chans: Sequence[tuple[int, Sequence[tuple[int, float, int]]]], *,
          limits: dict[int, int | None] | None = None, outbufs: dict[int, int] | None = None) -> RunState:
    """channels_pending in the given array order, each PENDING, KIST entries limit/written=0."""
    st = RunState(policy.make_pending(), scale_factor=F, tick_len=10)
    for i, (cid, counts) in enumerate(chans):
        ch = Channel(cid, mux_of(counts), outbuf=(outbufs or {}).get(cid, 0), state=PENDING)
        ch.heap_idx = i
        st.pending.heap.append(ch)
        st.channels[cid] = ch
        if isinstance(policy, KistPolicy):
            ch.limit = (limits or {}).get(cid, 543 * 100)
            ch.written = 0 if ch.limit is not None else None
    return st


@pytest.fixture
def make_state() -> Callable[..., RunState]:
    return build
